//! The forwarding layer: next hops (`bpf_fib_lookup`, falling back to the userspace neighbour
//! map, cached per backend), direct routing, destination NAT and its reverse, and IPIP / IP6IP6
//! encapsulation. Above the lookups, below the paths.

use aya_ebpf::{
    bindings::{
        bpf_check_mtu_ret::BPF_MTU_CHK_RET_FRAG_NEEDED, bpf_fib_lookup as FibParams, xdp_action,
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_FWD_DISABLED, BPF_FIB_LKUP_RET_SUCCESS,
    },
    helpers::{bpf_check_mtu, bpf_fib_lookup, bpf_jiffies64, bpf_redirect, bpf_xdp_adjust_head},
    programs::XdpContext,
};
use ka_common::{
    lb::{AddrKey, NeighValue, FAMILY_V4, METHOD_TUN, NH_CACHE_TTL_JIFFIES},
    stats::Counter,
    wire::{
        EthHdr, Ipv4Hdr, Ipv6Hdr, ETH_P_IP, ETH_P_IPV6, IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_TCP,
        IPPROTO_UDP,
    },
};

use crate::{
    csum::{self, Delta},
    lookup::hash_of,
    maps::{KA_GLOBALS, KA_NEIGH, KA_NH_CACHE},
    mem,
    parse::{Parsed, L3},
    ptr::{ptr_at_mut, read_at},
    scratch::{NextHop, Work},
    stats,
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Why there is no next hop.
pub enum NoNextHop {
    /// Neither the FIB nor the neighbour map knows the destination.
    Unknown,
    /// The packet of `tot_len` bytes exceeds the path MTU (the route's MTU).
    TooBig(u16),
}

/// The next hop towards `dst` for an IP packet of `tot_len` bytes: `bpf_fib_lookup` (input
/// mode from the ingress interface, so routes through any interface apply), else the neighbour
/// map kept by userspace: the next hops the daemon resolved for its real servers, static ones,
/// and what fixture tests seed. The FIB refuses every packet that entered an interface with
/// forwarding disabled (the default on a host; counted `lb_fib_fwd_disabled`): DR and TUN
/// then work from the neighbour map alone, as IPVS needs no forwarding for them. Returns the
/// route's MTU (`mtu_result`, kernel 5.12+; 0 when the neighbour map answered). Answers for
/// real servers are cached per CPU by [`backend_next_hop`], so this runs about once a second
/// per real server and CPU, not per packet.
// Verifier/LLVM: a BPF-to-BPF call, so this path's stack frame is not added to the
// caller's 512-byte frame.
#[inline(never)]
pub fn next_hop(
    ctx: &XdpContext,
    w: &mut Work,
    family: u8,
    dst: &[u8; 16],
    tot_len: u16,
) -> Result<u16, NoNextHop> {
    // An all-zero bpf_fib_lookup is a valid parameter block.
    mem::zero(&mut w.fib);
    let p = &mut w.fib;
    p.ifindex = ctx.ingress_ifindex() as u32;
    p.__bindgen_anon_1.tot_len = tot_len;
    if family == FAMILY_V4 {
        p.family = AF_INET;
        p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([dst[0], dst[1], dst[2], dst[3]]);
    } else {
        p.family = AF_INET6;
        p.__bindgen_anon_4.ipv6_dst = [
            u32::from_ne_bytes([dst[0], dst[1], dst[2], dst[3]]),
            u32::from_ne_bytes([dst[4], dst[5], dst[6], dst[7]]),
            u32::from_ne_bytes([dst[8], dst[9], dst[10], dst[11]]),
            u32::from_ne_bytes([dst[12], dst[13], dst[14], dst[15]]),
        ];
    }
    // SAFETY: ctx is the program's context; p lives on the stack for the call.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx as *mut _,
            p as *mut FibParams,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    if rc == BPF_FIB_LKUP_RET_SUCCESS as i64 {
        stats::inc(Counter::LbFibHit);
        w.nh = NextHop {
            ifindex: p.ifindex,
            macs: mem::macs(&p.dmac, &p.smac),
        };
        // SAFETY: a plain u16 of the union, written by the helper on success.
        return Ok(unsafe { p.__bindgen_anon_1.mtu_result });
    }
    if rc == BPF_FIB_LKUP_RET_FRAG_NEEDED as i64 {
        // SAFETY: a plain u16 of the union, the route's MTU on FRAG_NEEDED (kernel 5.12+).
        return Err(NoNextHop::TooBig(unsafe { p.__bindgen_anon_1.mtu_result }));
    }
    if rc == BPF_FIB_LKUP_RET_FWD_DISABLED as i64 {
        stats::inc(Counter::LbFibFwdDisabled);
    }
    let key = AddrKey {
        addr: *dst,
        family,
        _pad: [0; 3],
    };
    match KA_NEIGH.get_ptr(&key) {
        Some(n) => {
            // SAFETY: a map value, copied out.
            let n: NeighValue = unsafe { *n };
            stats::inc(Counter::LbNeighHit);
            w.nh = NextHop {
                ifindex: n.ifindex,
                macs: mem::macs(&n.dmac, &n.smac),
            };
            Ok(0)
        }
        None => Err(NoNextHop::Unknown),
    }
}

/// Bytes a backend's forwarding method adds to a packet of `family`: the outer header of TUN
/// (IPIP, IP6IP6), nothing for DR and NAT.
#[inline(always)]
pub fn tunnel_overhead(method: u8, family: u8) -> usize {
    match (method, family) {
        (METHOD_TUN, FAMILY_V4) => core::mem::size_of::<Ipv4Hdr>(),
        (METHOD_TUN, _) => core::mem::size_of::<Ipv6Hdr>(),
        _ => 0,
    }
}

/// The next hop towards backend `id` (address `w.backend.addr`, method `w.backend.method`) for
/// an IP packet of `len` bytes of family `w.key.family`, plus the method's
/// [`tunnel_overhead`]: this CPU's cached answer while
/// younger than `NH_CACHE_TTL_JIFFIES`, else [`next_hop`] (whose answer is cached with the
/// route's MTU). A packet longer than the path MTU is too big unless it is a GSO aggregate
/// ([`mtu_check_len`], asked only then).
// Inlined in the one forwarding path (its frame is small; the miss goes to `next_hop`, a call
// of its own): one call less per packet.
#[inline(always)]
pub fn backend_next_hop(
    ctx: &XdpContext,
    w: &mut Work,
    id: u32,
    len: usize,
) -> Result<(), NoNextHop> {
    let overhead = tunnel_overhead(w.backend.method, w.key.family);
    let Some(c) = KA_NH_CACHE.get_ptr_mut(id) else {
        return Err(NoNextHop::Unknown);
    };
    // SAFETY: plain helper call (5.5+), inlined by the verifier on 64-bit JITs.
    let now = unsafe { bpf_jiffies64() };
    // SAFETY: this CPU's slot; no concurrent writer on this CPU during the program run.
    let e = unsafe { &mut *c };
    if e.stamp != 0 && now.wrapping_sub(e.stamp) < NH_CACHE_TTL_JIFFIES {
        if e.mtu != 0 && len + overhead > usize::from(e.mtu) && mtu_check_len(ctx, len, overhead) != 0 {
            return Err(NoNextHop::TooBig(e.mtu));
        }
        w.nh.ifindex = e.ifindex;
        // SAFETY: dmac + smac are 12 contiguous bytes at offset 4 of the 8-aligned entry.
        w.nh.macs = unsafe { mem::load12(e.dmac.as_ptr()) };
        return Ok(());
    }
    let (family, rs) = (w.backend.family, w.backend.addr);
    let mtu = next_hop(ctx, w, family, &rs, mtu_check_len(ctx, len, overhead))?;
    e.ifindex = w.nh.ifindex;
    // SAFETY: as above.
    unsafe { mem::store12(e.dmac.as_mut_ptr(), &w.nh.macs) };
    e.mtu = mtu;
    // Never 0 (empty).
    e.stamp = now.max(1);
    Ok(())
}

/// The length to check against the path MTU: the packet's plus the encapsulation `overhead`,
/// or 0 (no check) for a GSO aggregate. Asked only of a packet longer than the cached path MTU
/// (or when the next hop is looked up), so the helper call stays off the per-packet path.
/// Generic (skb) mode, which `ka run` uses on a veth, hands XDP a whole GSO skb (linearized,
/// up to 64 KiB) that the kernel segments on output; a packet longer than the ingress
/// interface's MTU can only be such an aggregate (native mode never sees one), and answering
/// it with "fragmentation needed" would stall the sender's TCP. `bpf_check_mtu` needs kernel
/// 5.12+, as `mtu_result` of `bpf_fib_lookup` does.
// Verifier/LLVM: a BPF-to-BPF call, so `mtu_len` is not on the stack of the deepest call chain
// (the combined limit is 512 bytes).
#[inline(never)]
pub fn mtu_check_len(ctx: &XdpContext, len: usize, overhead: usize) -> u16 {
    let mut mtu_len = len as u32;
    // SAFETY: plain helper call; ifindex 0 is the ingress interface, mtu_len lives on the stack.
    let rc = unsafe { bpf_check_mtu(ctx.ctx as *mut _, 0, &mut mtu_len, 0, 0) };
    if rc == i64::from(BPF_MTU_CHK_RET_FRAG_NEEDED) {
        0
    } else {
        (len + overhead) as u16
    }
}

/// Rewrites the Ethernet addresses (keeping `ether_type` unless `ether_type` is given) and
/// sends the frame out of the next hop's interface: `XDP_TX` on the ingress interface,
/// `XDP_REDIRECT` elsewhere.
#[inline(always)]
pub fn transmit(ctx: &XdpContext, nh: &NextHop, ether_type: Option<u16>) -> u32 {
    let Some(eth) = ptr_at_mut::<EthHdr>(ctx, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: bounds-checked by ptr_at_mut.
    unsafe {
        mem::store12(eth as *mut u8, &nh.macs);
        if let Some(t) = ether_type {
            (*eth).ether_type = t.to_be_bytes();
        }
    }
    if nh.ifindex == ctx.ingress_ifindex() as u32 {
        xdp_action::XDP_TX
    } else {
        // SAFETY: plain helper call.
        unsafe { bpf_redirect(nh.ifindex, 0) as u32 }
    }
}

/// Length of the IP packet (header included) the parser found, `None` for a non-IP frame.
#[inline(always)]
pub fn ip_len(pkt: &Parsed) -> Option<usize> {
    (pkt.ip_len != 0).then_some(usize::from(pkt.ip_len))
}

/// Rewrites the source (`src = true`) or destination address and port of a TCP/UDP packet and
/// updates the IPv4 header and transport checksums incrementally.
// Verifier/LLVM: a BPF-to-BPF call, so this path's stack frame is not added to the
// caller's 512-byte frame.
#[inline(never)]
pub fn rewrite(
    ctx: &XdpContext,
    pkt: &Parsed,
    src: bool,
    addr: &[u8; 16],
    port: [u8; 2],
) -> Option<()> {
    let l4 = pkt.l4_off;
    let (check_off, udp) = match pkt.ip_proto {
        IPPROTO_TCP => (l4 + 16, false),
        IPPROTO_UDP => (l4 + 6, true),
        _ => return None,
    };
    let port_off = if src { l4 } else { l4 + 2 };
    let old_port: [u8; 2] = read_at(ctx, port_off)?;
    let old_check: [u8; 2] = read_at(ctx, check_off)?;
    // One change for both checksums: the address is in the IPv4 header and in the transport
    // pseudo-header; the port only in the transport header.
    let mut l4c = Delta::default();
    l4c.replace(&old_port, &port);
    match pkt.l3 {
        L3::Ipv4 => {
            let ip = ptr_at_mut::<Ipv4Hdr>(ctx, pkt.l3_off)?;
            // SAFETY: bounds-checked by ptr_at_mut.
            unsafe {
                let mut d = Delta::default();
                d.swap(if src { &mut (*ip).src } else { &mut (*ip).dst }, &ka_common::lb::v4_of_16(addr));
                (*ip).check = d.apply((*ip).check);
                l4c = l4c.plus(d);
            }
        }
        L3::Ipv6 => {
            let ip = ptr_at_mut::<Ipv6Hdr>(ctx, pkt.l3_off)?;
            // SAFETY: bounds-checked by ptr_at_mut.
            unsafe { l4c.swap(if src { &mut (*ip).src } else { &mut (*ip).dst }, addr) };
        }
        L3::Other => return None,
    }
    let p = ptr_at_mut::<[u8; 2]>(ctx, port_off)?;
    let c = ptr_at_mut::<[u8; 2]>(ctx, check_off)?;
    // SAFETY: bounds-checked by ptr_at_mut.
    unsafe {
        *p = port;
        // A UDP checksum of 0 means "none" over IPv4 and stays so; a computed 0 is sent as
        // 0xffff (RFC 768).
        if !(udp && old_check == [0, 0] && pkt.l3 == L3::Ipv4) {
            let mut n = l4c.apply(old_check);
            if udp && n == [0, 0] {
                n = [0xff, 0xff];
            }
            *c = n;
        }
    }
    Some(())
}

/// Outer source of a tunnel packet, written to `w.tmpl.src` (`None` when none is configured):
/// the configured source with its host bits taken from the flow's scheduling hash
/// (`lookup::hash_of`), so the real server's RSS spreads flows. Returns the hash (IPv6 also
/// takes its flow label from it); an IPv4 source without host bits needs none (0), and the
/// hash is not computed.
#[inline(always)]
fn tunnel_src(w: &mut Work, family: u8) -> Option<u32> {
    let g = KA_GLOBALS.get(0)?;
    if family == FAMILY_V4 {
        let base = u32::from_be_bytes(g.tun_src_v4);
        if base == 0 {
            return None;
        }
        let bits = u32::from(g.tun_v4_host_bits.min(16));
        let mask = if bits == 0 { 0 } else { (1u32 << bits) - 1 };
        let hash = if mask == 0 { 0 } else { hash_of(w) };
        // SAFETY: FlowKey is 4-aligned with src at 0.
        unsafe { mem::store_v4(&mut w.tmpl.src, ((base & !mask) | (hash & mask)).to_be_bytes()) };
        Some(hash)
    } else {
        if ka_common::vrrp_fast::eq16(&g.tun_src_v6, &[0; 16]) {
            return None;
        }
        let hash = hash_of(w);
        let bits = u32::from(g.tun_v6_host_bits.min(32));
        let mask = if bits == 0 {
            0
        } else if bits == 32 {
            u32::MAX
        } else {
            (1u32 << bits) - 1
        };
        let a = &g.tun_src_v6;
        let low = u32::from_be_bytes([a[12], a[13], a[14], a[15]]);
        w.tmpl.src = *a;
        let v = ((low & !mask) | (hash & mask)).to_be_bytes();
        w.tmpl.src[12..16].copy_from_slice(&v);
        Some(hash)
    }
}

/// Encapsulates the (untagged) frame's IP packet of `inner_len` bytes in IPIP (IPv4) or
/// IP6IP6 (IPv6) towards the backend and transmits it to the next hop already in `w.nh`
/// (counted `lb_tun` by the caller when sent). The flow's scheduling hash varies the outer
/// source and the IPv6 flow label ([`tunnel_src`]). The outer header is written in
/// place, from the scratch memory (Verifier: this function is at the bottom of the deepest
/// call chain, whose frames share 512 bytes).
// Verifier/LLVM: a BPF-to-BPF call, so this path's stack frame is not added to the
// caller's 512-byte frame.
#[inline(never)]
pub fn encap(ctx: &XdpContext, w: &mut Work, inner_len: usize) -> u32 {
    let (l3_off, family) = (w.pkt.l3_off, w.key.family);
    let v4 = family == FAMILY_V4;
    let hdr = tunnel_overhead(METHOD_TUN, family);
    let outer_len = inner_len + hdr;
    let Some(hash) = tunnel_src(w, family) else {
        stats::inc(Counter::PassLbUnsupported);
        return xdp_action::XDP_PASS;
    };
    let tos: u8 = if v4 {
        read_at::<Ipv4Hdr>(ctx, l3_off).map_or(0, |ip| ip.tos)
    } else {
        0
    };
    // SAFETY: plain helper call; every pointer is re-derived from ctx afterwards.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(hdr as i32)) } != 0 {
        stats::inc(Counter::DropAdjust);
        return xdp_action::XDP_DROP;
    }
    if v4 {
        let ip = ipv4_header(
            tos,
            outer_len as u16,
            IPPROTO_IPIP,
            ka_common::lb::v4_of_16(&w.tmpl.src),
            ka_common::lb::v4_of_16(&w.backend.addr),
        );
        let Some(p) = ptr_at_mut::<Ipv4Hdr>(ctx, 14) else {
            return xdp_action::XDP_ABORTED;
        };
        // SAFETY: bounds-checked.
        unsafe { *p = ip };
        transmit(ctx, &w.nh, Some(ETH_P_IP))
    } else {
        let Some(p) = ptr_at_mut::<Ipv6Hdr>(ctx, 14) else {
            return xdp_action::XDP_ABORTED;
        };
        // SAFETY: bounds-checked; the addresses come from 4-aligned fields of the scratch.
        unsafe {
            (*p).vtc_flow = (0x6000_0000u32 | (hash & 0x000f_ffff)).to_be_bytes();
            (*p).payload_len = (inner_len as u16).to_be_bytes();
            (*p).next_hdr = IPPROTO_IPV6;
            (*p).hop_limit = 64;
            mem::store16_packet(&mut (*p).src, &w.tmpl.src);
            mem::store16_packet(&mut (*p).dst, &w.backend.addr);
        }
        transmit(ctx, &w.nh, Some(ETH_P_IPV6))
    }
}

/// An IPv4 header without options (DF clear, TTL 64) with its checksum, built as a plain
/// value: the checksum is summed over its bytes (`bytemuck::bytes_of`, `Ipv4Hdr` being Pod).
#[inline(always)]
pub fn ipv4_header(tos: u8, tot_len: u16, protocol: u8, src: [u8; 4], dst: [u8; 4]) -> Ipv4Hdr {
    let mut ip = Ipv4Hdr {
        version_ihl: 0x45,
        tos,
        tot_len: tot_len.to_be_bytes(),
        id: [0; 2],
        frag_off: [0; 2],
        ttl: 64,
        protocol,
        check: [0; 2],
        src,
        dst,
    };
    let bytes: &[u8; 20] = bytemuck::cast_ref(&ip);
    ip.check = csum::of_bytes(bytes);
    ip
}
