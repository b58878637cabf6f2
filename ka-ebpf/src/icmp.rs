//! ICMP for the load balancer, as IPVS (`ip_vs_in_icmp`, `ip_vs_out_icmp`) and Katran do:
//! errors about VIP flows go to the party that owns the flow, and packets to a service too big
//! for the path to their real server get a "fragmentation needed" / "packet too big" answer.
//!
//! An ICMP error quotes the packet that caused it (the embedded packet). Two directions matter:
//!
//! - **To the real server.** The embedded packet went from VIP:vport to a client (a reply of a
//!   DR/TUN real server, or of the director for NAT) and the error is addressed to the VIP. The
//!   flow is the embedded tuple reversed (client -> VIP), looked up like a packet of the flow
//!   (connection table, else the service's scheduler) and the error is forwarded with the
//!   flow's method: DR rewrites the MACs, TUN encapsulates, NAT translates the outer
//!   destination and the embedded source (address, port) to the real server.
//! - **To the client (NAT).** The embedded packet went from the client to a NAT real server
//!   (sent by the director) and the error is addressed to the client. The NAT reverse entry of
//!   the embedded tuple reversed gives the VIP; the outer source and the embedded destination
//!   (address, port) are translated back to it and the error goes to the client, as a NAT
//!   reply does.
//!
//! Katran's way: the error's flow key is rewritten to the embedded flow ([`error_flow`]) and
//! the error continues down the load balancer's one forwarding path (`crate::lb`), which calls
//! back here only for what is ICMP's own: the NAT of an error ([`translate`]) and the errors
//! the director sends itself ([`too_big`]).
//!
//! Checksums are updated incrementally (RFC 1624, [`crate::csum::Delta`]): the outer IPv4
//! header, the embedded IPv4 header, the embedded TCP/UDP checksum when it is quoted, and the
//! ICMP checksum (which for ICMPv6 covers the outer addresses through the pseudo-header).
//! Everything else passes to the kernel, counted per reason; an error is only matched when it
//! is addressed to the embedded packet's source.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use ka_common::{
    lb::{FAMILY_V4, FAMILY_V6},
    stats::Counter,
    wire::{
        EthHdr, IcmpHdr, Ipv4Hdr, Ipv6Hdr, ETH_P_IP, ETH_P_IPV6, ICMPV6_DEST_UNREACH,
        ICMPV6_ERROR_MAX_LEN, ICMPV6_PACKET_TOO_BIG, ICMPV6_PARAMETER_PROBLEM,
        ICMPV6_TIME_EXCEEDED, ICMP_DEST_UNREACH, ICMP_ERROR_MAX_LEN, ICMP_FRAG_NEEDED,
        ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP,
        IPPROTO_UDP, IPV4_MIN_MTU,
    },
};

use crate::{
    csum::{add_bytes, fold, Delta},
    forward::{self, ip_len},
    lookup::sync_key4,
    mem,
    parse::L3,
    ptr::{ptr_at, ptr_at_mut, read_at},
    scratch::Work,
    stats,
};

/// Size of an ICMP/ICMPv6 header (type, code, checksum, rest of header).
const ICMP_HDR_LEN: usize = 8;
/// The quote of a full-size "fragmentation needed" (576-byte datagram).
const QUOTE_V4: usize = ICMP_ERROR_MAX_LEN - 20 - ICMP_HDR_LEN;
/// The quote of a full-size "packet too big" (1280-byte packet).
const QUOTE_V6: usize = ICMPV6_ERROR_MAX_LEN - 40 - ICMP_HDR_LEN;
/// Bytes of the embedded transport header an error must quote (RFC 792: 64 bits of data).
const INNER_L4_MIN: usize = 8;

/// Whether ICMP (`v4`) or ICMPv6 type `ty` is an error message that quotes a packet.
#[inline(always)]
fn is_error(v4: bool, ty: u8) -> bool {
    if v4 {
        ty == ICMP_DEST_UNREACH || ty == ICMP_TIME_EXCEEDED || ty == ICMP_PARAMETER_PROBLEM
    } else {
        ty == ICMPV6_DEST_UNREACH
            || ty == ICMPV6_PACKET_TOO_BIG
            || ty == ICMPV6_TIME_EXCEEDED
            || ty == ICMPV6_PARAMETER_PROBLEM
    }
}

/// Rewrites the flow key of the ICMP message stashed in `w` to the flow of the error's
/// embedded packet, its tuple reversed (the direction the flow's packets reach the director:
/// client -> VIP for errors to a real server, real server -> client for NAT errors to the
/// client): from here on the error is a packet of that flow. `Err`: the counter of why the
/// message is not an error about a flow.
// Verifier: a BPF-to-BPF call of its own, so its locals (two copied IP headers) are not in the
// frame of `lb::handle`, whose chain down to `forward::rewrite` must stay under 512 bytes.
#[inline(never)]
pub fn error_flow(ctx: &XdpContext, w: &mut Work) -> Result<(), Counter> {
    let (l3, l3_off, icmp_off) = (w.pkt.l3, w.pkt.l3_off, w.pkt.l4_off);
    let icmp: IcmpHdr = read_at(ctx, icmp_off).ok_or(Counter::PassIcmpInnerTruncated)?;
    if !is_error(l3 == L3::Ipv4, icmp.icmp_type) {
        return Err(Counter::PassIcmpNotError);
    }
    // The embedded packet ends with the outer packet (not the frame, which may be padded).
    let end = l3_off + ip_len(&w.pkt).ok_or(Counter::PassIcmpInnerTruncated)?;
    let inner = icmp_off + ICMP_HDR_LEN;
    let k = &mut w.key;
    let (proto, l4) = match l3 {
        L3::Ipv4 => {
            let outer = ptr_at::<Ipv4Hdr>(ctx, l3_off).ok_or(Counter::PassIcmpInnerTruncated)?;
            let ip = ptr_at::<Ipv4Hdr>(ctx, inner).ok_or(Counter::PassIcmpInnerTruncated)?;
            if inner + core::mem::size_of::<Ipv4Hdr>() > end {
                return Err(Counter::PassIcmpInnerTruncated);
            }
            // SAFETY: bounds-checked by ptr_at; the wire structs have alignment 1.
            let (ip, outer_dst) = unsafe { (*ip, (*outer).dst) };
            let hlen = ip.header_len();
            if ip.version() != 4 || hlen < core::mem::size_of::<Ipv4Hdr>() {
                return Err(Counter::PassIcmpInnerBad);
            }
            if ip.fragment_offset() != 0 {
                return Err(Counter::PassIcmpInnerFragment);
            }
            if outer_dst != ip.src {
                return Err(Counter::PassIcmpNotVip);
            }
            // SAFETY: FlowKey is 4-aligned with src at 0, dst at 16.
            unsafe {
                mem::store_v4(&mut k.src, ip.dst);
                mem::store_v4(&mut k.dst, ip.src);
            }
            k.family = FAMILY_V4;
            (ip.protocol, inner + hlen)
        }
        L3::Ipv6 => {
            let outer = ptr_at::<Ipv6Hdr>(ctx, l3_off).ok_or(Counter::PassIcmpInnerTruncated)?;
            let ip = ptr_at::<Ipv6Hdr>(ctx, inner).ok_or(Counter::PassIcmpInnerTruncated)?;
            if inner + core::mem::size_of::<Ipv6Hdr>() > end {
                return Err(Counter::PassIcmpInnerTruncated);
            }
            // SAFETY: bounds-checked by ptr_at; the packet side may be unaligned (see
            // mem::load16); FlowKey is 4-aligned with src at 0, dst at 16.
            let next = unsafe {
                if (*ip).version() != 6 {
                    return Err(Counter::PassIcmpInnerBad);
                }
                mem::load16(&mut k.src, &(*ip).dst);
                mem::load16(&mut k.dst, &(*ip).src);
                mem::load16(&mut w.tmpl.dst, &(*outer).dst);
                (*ip).next_hdr
            };
            if !ka_common::vrrp_fast::eq16(&w.tmpl.dst, &k.dst) {
                return Err(Counter::PassIcmpNotVip);
            }
            k.family = FAMILY_V6;
            (next, inner + core::mem::size_of::<Ipv6Hdr>())
        }
        L3::Other => return Err(Counter::PassIcmpNotVip),
    };
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return Err(Counter::PassIcmpNotVip);
    }
    if l4 + INNER_L4_MIN > end {
        return Err(Counter::PassIcmpInnerTruncated);
    }
    let ports: [u8; 4] = read_at(ctx, l4).ok_or(Counter::PassIcmpInnerTruncated)?;
    k.sport = [ports[2], ports[3]];
    k.dport = [ports[0], ports[1]];
    k.proto = proto;
    k._pad = [0; 2];
    sync_key4(w);
    Ok(())
}

/// NAT of an ICMP error ([`error_flow`] succeeded on it). Towards the real server
/// (`to_client` false): the outer destination and the embedded source address and port become
/// `addr`:`port`. Towards the client: the outer source and the embedded destination address
/// and port. Every checksum involved is updated incrementally: the outer and embedded IPv4
/// headers', the embedded TCP/UDP checksum when it is quoted (pseudo-header and port), and the
/// ICMP checksum over every changed word (plus, for ICMPv6, the outer address in its
/// pseudo-header).
// Verifier/LLVM: a BPF-to-BPF call (stack frame of its own). Fields are rewritten in place
// (`Delta::swap`), never copied out, to keep the frame small: it sits under `lb::handle` in
// the 512-byte combined stack.
#[inline(never)]
pub fn translate(
    ctx: &XdpContext,
    w: &Work,
    to_client: bool,
    addr: &[u8; 16],
    port: [u8; 2],
) -> Option<()> {
    let (l3_off, icmp_off, proto) = (w.pkt.l3_off, w.pkt.l4_off, w.key.proto);
    let end = l3_off + ip_len(&w.pkt)?;
    let inner = icmp_off + ICMP_HDR_LEN;
    let v4 = w.pkt.l3 == L3::Ipv4;
    // `ic`: the changes to the words the ICMP checksum covers; `pseudo`: the embedded address
    // change, which the embedded transport checksum's pseudo-header sees.
    let (mut ic, pseudo, l4) = if v4 {
        let outer = ptr_at_mut::<Ipv4Hdr>(ctx, l3_off)?;
        let ip = ptr_at_mut::<Ipv4Hdr>(ctx, inner)?;
        let new = &ka_common::lb::v4_of_16(addr);
        // SAFETY: bounds-checked by ptr_at_mut; the wire structs have alignment 1.
        unsafe {
            let mut d = Delta::default();
            d.swap(if to_client { &mut (*outer).src } else { &mut (*outer).dst }, new);
            (*outer).check = d.apply((*outer).check);
            let mut pseudo = Delta::default();
            pseudo.swap(if to_client { &mut (*ip).dst } else { &mut (*ip).src }, new);
            let check = pseudo.apply((*ip).check);
            let mut ic = pseudo;
            ic.swap(&mut (*ip).check, &check);
            (ic, pseudo, inner + (*ip).header_len())
        }
    } else {
        let outer = ptr_at_mut::<Ipv6Hdr>(ctx, l3_off)?;
        let ip = ptr_at_mut::<Ipv6Hdr>(ctx, inner)?;
        // SAFETY: as above.
        unsafe {
            // The outer addresses are in ICMPv6's pseudo-header.
            let mut d = Delta::default();
            d.swap(if to_client { &mut (*outer).src } else { &mut (*outer).dst }, addr);
            let mut pseudo = Delta::default();
            pseudo.swap(if to_client { &mut (*ip).dst } else { &mut (*ip).src }, addr);
            (d.plus(pseudo), pseudo, inner + core::mem::size_of::<Ipv6Hdr>())
        }
    };
    let p = ptr_at_mut::<[u8; 2]>(ctx, if to_client { l4 + 2 } else { l4 })?;
    let mut dport = Delta::default();
    // SAFETY: bounds-checked by ptr_at_mut.
    unsafe { dport.swap(p, &port) };
    ic = ic.plus(dport);
    let (check_at, udp) = if proto == IPPROTO_TCP {
        (l4 + 16, false)
    } else {
        (l4 + 6, true)
    };
    // RFC 792 quotes 8 bytes of the transport header: a TCP checksum may not be there. A UDP
    // checksum of 0 means "none" over IPv4 and stays so (RFC 768).
    if check_at + 2 <= end {
        let c = ptr_at_mut::<[u8; 2]>(ctx, check_at)?;
        // SAFETY: bounds-checked by ptr_at_mut.
        unsafe {
            if !(udp && v4 && *c == [0, 0]) {
                let mut check = pseudo.plus(dport).apply(*c);
                if udp && check == [0, 0] {
                    check = [0xff, 0xff];
                }
                ic.swap(c, &check);
            }
        }
    }
    let icmp = ptr_at_mut::<IcmpHdr>(ctx, icmp_off)?;
    // SAFETY: bounds-checked by ptr_at_mut.
    unsafe { (*icmp).check = ic.apply((*icmp).check) };
    Some(())
}

/// One's complement sum of the `LEN` packet bytes at `off` (`LEN` even).
// Verifier: one bounds check for the whole constant length, then a walk with a constant trip
// count (one straight path per length; a variable length would fork the walk at every loop
// exit and again through the tail). Inlined: as a BPF-to-BPF call LLVM passes it the packet
// pointers, which the verifier rejects.
#[inline(always)]
fn sum_fixed<const LEN: usize>(ctx: &XdpContext, off: usize) -> Option<u32> {
    const { assert!(LEN % 2 == 0) };
    let p = ptr_at::<[u8; LEN]>(ctx, off)?;
    // SAFETY: bounds-checked by ptr_at; summed in place, not copied.
    Some(add_bytes(0, unsafe { &*p }))
}

/// Answers a packet to a service (flow in `w.key`, untagged) that is `mtu` bytes too big for
/// the route to its real server once `overhead` bytes of encapsulation are added: an ICMP
/// "fragmentation needed" (type 3 code 4, next-hop MTU `mtu - overhead`, RFC 1191) for IPv4
/// with DF set, an ICMPv6 "packet too big" (MTU `mtu - overhead`, RFC 4443 §3.2) for IPv6,
/// from the VIP to the client, quoting as much of the packet as RFC 1812 §4.3.2.3 (576-byte
/// datagram) and RFC 4443 §2.4 (c) (1280-byte packet) allow (a packet shorter than that, only
/// possible over an IPv4 path MTU below 568, is quoted to 256 or 68 bytes), sent back out of
/// the ingress interface. IPv4 without DF passes to the kernel (which may fragment), counted
/// `pass_too_big`, as do an IPv4 MTU that would fall below 68 and an IPv6 path MTU below the
/// IPv6 minimum.
// Verifier/LLVM: a BPF-to-BPF call (stack frame of its own).
#[inline(never)]
pub fn too_big(ctx: &XdpContext, w: &mut Work, mtu: u16, overhead: u16) -> u32 {
    let v4 = w.key.family == FAMILY_V4;
    let mtu = mtu.saturating_sub(overhead);
    let Some(len) = ip_len(&w.pkt) else {
        return xdp_action::XDP_ABORTED;
    };
    // Untagged (checked by the caller): the IP header follows the Ethernet header.
    let pass = w.pkt.l3_off != core::mem::size_of::<EthHdr>()
        || if v4 {
            let df = read_at::<Ipv4Hdr>(ctx, 14).is_some_and(|ip| ip.frag_off[0] & 0x40 != 0);
            !df || mtu < IPV4_MIN_MTU
        } else {
            false
        };
    if pass {
        stats::inc(Counter::PassTooBig);
        return xdp_action::XDP_PASS;
    }
    let (ip_hdr, max) = if v4 {
        (core::mem::size_of::<Ipv4Hdr>(), ICMP_ERROR_MAX_LEN)
    } else {
        (core::mem::size_of::<Ipv6Hdr>(), ICMPV6_ERROR_MAX_LEN)
    };
    let hdr = ip_hdr + ICMP_HDR_LEN;
    // As much of the packet as the limit allows: always all of it for IPv6, where the packet
    // exceeds a path MTU of at least 1280 (a smaller one is a misconfiguration: passed). A
    // shorter IPv4 packet (over a path MTU below 568) is quoted to 256 or 68 bytes, at least
    // the header and 64 bits RFC 792 asks for.
    // Verifier: a few constant lengths keep the checksum walk linear (see `sum_fixed`).
    let quote = if len >= max - hdr {
        max - hdr
    } else if v4 && len >= 256 {
        256
    } else if v4 && len >= usize::from(IPV4_MIN_MTU) {
        usize::from(IPV4_MIN_MTU)
    } else {
        stats::inc(Counter::PassTooBig);
        return xdp_action::XDP_PASS;
    };
    let frame = ctx.data_end() - ctx.data();
    let delta = (14 + quote) as i32 - frame as i32;
    // SAFETY: plain helper calls; every pointer is derived from ctx afterwards.
    if delta != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        stats::inc(Counter::DropAdjust);
        return xdp_action::XDP_DROP;
    }
    // SAFETY: as above.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(hdr as i32)) } != 0 {
        stats::inc(Counter::DropAdjust);
        return xdp_action::XDP_DROP;
    }
    // The original Ethernet header now sits `hdr` bytes in: its MACs, swapped, and the
    // EtherType go to the new one, a half-word at a time in place (Verifier: this function is
    // at the bottom of the deepest call chain; copies of headers on its stack cost the 512-byte
    // budget the hot paths need).
    let (Some(orig), Some(eth)) = (ptr_at::<EthHdr>(ctx, hdr), ptr_at_mut::<EthHdr>(ctx, 0)) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: both bounds-checked; the new header ends where the old one starts (hdr >= 14).
    unsafe {
        let (o, e) = (orig as *const u16, eth as *mut u16);
        for i in 0..3 {
            core::ptr::write_volatile(e.add(i), core::ptr::read_volatile(o.add(3 + i)));
            core::ptr::write_volatile(e.add(3 + i), core::ptr::read_volatile(o.add(i)));
        }
        (*eth).ether_type = if v4 { ETH_P_IP } else { ETH_P_IPV6 }.to_be_bytes();
    }
    let icmp_off = 14 + ip_hdr;
    let icmp_len = ICMP_HDR_LEN + quote;
    let (client, vip) = (&w.key.src, &w.key.dst);
    let Some(icmp) = ptr_at_mut::<IcmpHdr>(ctx, icmp_off) else {
        return xdp_action::XDP_ABORTED;
    };
    let mut sum = if v4 {
        let ip = forward::ipv4_header(0, (ip_hdr + icmp_len) as u16, IPPROTO_ICMP, ka_common::lb::v4_of_16(vip), ka_common::lb::v4_of_16(client));
        let Some(p) = ptr_at_mut::<Ipv4Hdr>(ctx, 14) else {
            return xdp_action::XDP_ABORTED;
        };
        let m = mtu.to_be_bytes();
        // SAFETY: bounds-checked by ptr_at_mut.
        unsafe {
            *p = ip;
            *icmp = IcmpHdr {
                icmp_type: ICMP_DEST_UNREACH,
                code: ICMP_FRAG_NEEDED,
                check: [0; 2],
                rest: [0, 0, m[0], m[1]],
            };
        }
        0
    } else {
        let Some(p) = ptr_at_mut::<Ipv6Hdr>(ctx, 14) else {
            return xdp_action::XDP_ABORTED;
        };
        // SAFETY: bounds-checked by ptr_at_mut; the addresses are copied a word at a time from
        // the 4-aligned flow key (mem::load16 the other way round: unaligned packet stores).
        unsafe {
            (*p).vtc_flow = [0x60, 0, 0, 0];
            (*p).payload_len = (icmp_len as u16).to_be_bytes();
            (*p).next_hdr = IPPROTO_ICMPV6;
            (*p).hop_limit = 64;
            mem::store16_packet(&mut (*p).src, vip);
            mem::store16_packet(&mut (*p).dst, client);
            *icmp = IcmpHdr {
                icmp_type: ICMPV6_PACKET_TOO_BIG,
                code: 0,
                check: [0; 2],
                rest: u32::from(mtu).to_be_bytes(),
            };
        }
        // Pseudo-header (RFC 8200 §8.1): addresses, upper-layer length, next header.
        let mut s = add_bytes(0, vip);
        s = add_bytes(s, client);
        s = add_bytes(s, &(icmp_len as u32).to_be_bytes());
        s + u32::from(IPPROTO_ICMPV6)
    };
    let body = match quote {
        QUOTE_V4 => sum_fixed::<{ QUOTE_V4 + ICMP_HDR_LEN }>(ctx, icmp_off),
        QUOTE_V6 => sum_fixed::<{ QUOTE_V6 + ICMP_HDR_LEN }>(ctx, icmp_off),
        256 => sum_fixed::<{ 256 + ICMP_HDR_LEN }>(ctx, icmp_off),
        _ => sum_fixed::<{ IPV4_MIN_MTU as usize + ICMP_HDR_LEN }>(ctx, icmp_off),
    };
    let Some(body) = body else {
        return xdp_action::XDP_ABORTED;
    };
    sum += body;
    let Some(icmp) = ptr_at_mut::<IcmpHdr>(ctx, icmp_off) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: bounds-checked by ptr_at_mut.
    unsafe { (*icmp).check = (!fold(sum)).to_be_bytes() };
    stats::inc(Counter::LbIcmpTooBig);
    xdp_action::XDP_TX
}
