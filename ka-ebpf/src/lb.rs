//! The load-balancer path of `ka_xdp` for TCP/UDP: service lookup, mastership gating, backend
//! choice, counters, and forwarding by the backend's method; NAT replies translated back.

use aya_ebpf::{
    bindings::{bpf_check_mtu_ret::BPF_MTU_CHK_RET_FRAG_NEEDED, xdp_action},
    helpers::bpf_check_mtu,
    programs::XdpContext,
};
use ka_common::{
    lb::{G_ANY_PORT, G_DST_MAC, G_NAT, G_SYNC_MASTER, METHOD_DR, METHOD_NAT, METHOD_TUN, NO_MASTER_SLOT},
    sched::NO_ID,
    stats::Counter,
};

use crate::{
    forward::{self, NoNextHop},
    lookup::{choose, flow_key, hash_of, nat_reverse, record_nat, schedule_least, service, NEED_LEAST},
    maps::{self, Work, KA_MASTER},
    stats,
};

/// Handles a TCP/UDP packet (stashed by the entry point) while services are configured.
// Verifier/LLVM: a BPF-to-BPF call, so this path's stack frame is not added to the caller's.
#[inline(never)]
pub fn handle(ctx: &XdpContext, global_flags: u32) -> u32 {
    let Some(w) = maps::work() else {
        return xdp_action::XDP_PASS;
    };
    if !flow_key(ctx, w) {
        return xdp_action::XDP_PASS;
    }
    let Some(svc) = service(w, global_flags & G_ANY_PORT != 0) else {
        if global_flags & G_NAT == 0 {
            stats::inc(Counter::PassNotVip);
            return xdp_action::XDP_PASS;
        }
        return nat_reply(ctx, w);
    };
    // Only the director the frame is addressed to forwards it (a flooded frame reaches all).
    if global_flags & G_DST_MAC != 0 && !maps::to_local_mac(ctx) {
        stats::inc(Counter::PassNotOurMac);
        return xdp_action::XDP_PASS;
    }
    // SAFETY: a valid map value. Copied once: the packet sees one version of the service.
    crate::mem::copy(&mut w.svc, unsafe { &*svc });
    if let Some(verdict) = gate(w) {
        return verdict;
    }
    let Some((mut id, new_flow)) = choose(w, true) else {
        stats::inc(Counter::PassNoBackend);
        return xdp_action::XDP_PASS;
    };
    if id == NEED_LEAST {
        id = schedule_least(w);
        if id == NO_ID {
            stats::inc(Counter::PassNoBackend);
            return xdp_action::XDP_PASS;
        }
    }
    if new_flow && global_flags & G_SYNC_MASTER != 0 {
        crate::sync::new_conn(w, id);
    }
    // From the parser (a valid IP packet's length).
    let len = usize::from(w.pkt.ip_len);
    let method = w.backend.method;
    if let Err(e) = forward::backend_next_hop(ctx, w, id, len) {
        if let NoNextHop::TooBig(mtu) = e {
            let overhead = forward::tunnel_overhead(method, w.key.family);
            return crate::icmp::too_big(ctx, w, mtu, overhead as u16);
        }
        return no_next_hop(e);
    }
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    stats::add_service(w.svc.id, bytes);
    stats::add_backend(id, bytes);
    match method {
        METHOD_DR => {
            stats::inc(Counter::LbDr);
            forward::transmit(ctx, &w.nh, None)
        }
        METHOD_TUN => forward::encap(ctx, w, len, hash_of(w)),
        METHOD_NAT => {
            if new_flow {
                record_nat(w);
            }
            let rs = w.backend.addr;
            if forward::rewrite(ctx, &w.pkt, false, &rs, w.backend.port).is_none() {
                return xdp_action::XDP_ABORTED;
            }
            stats::inc(Counter::LbNat);
            forward::transmit(ctx, &w.nh, None)
        }
        _ => {
            stats::inc(Counter::PassNoBackend);
            xdp_action::XDP_PASS
        }
    }
}

/// Whether this node may serve the packet of service `w.svc`: `Some(XDP_PASS)`, counted, when
/// it is not MASTER for the VIP's VRRP instance or the frame is VLAN-tagged (its egress would
/// be a VLAN device, which XDP cannot transmit on).
#[inline(always)]
pub fn gate(w: &Work) -> Option<u32> {
    if w.svc.master_slot != NO_MASTER_SLOT {
        match KA_MASTER.get(w.svc.master_slot) {
            Some(m) if *m != 0 => {}
            _ => {
                stats::inc(Counter::PassNotMaster);
                return Some(xdp_action::XDP_PASS);
            }
        }
    }
    if w.pkt.vlan_tags != 0 {
        stats::inc(Counter::PassLbUnsupported);
        return Some(xdp_action::XDP_PASS);
    }
    None
}

/// The length to check against the path MTU: the packet's plus the encapsulation `overhead`,
/// or 0 (no check) for a GSO aggregate. Asked only of a packet longer than the cached path MTU
/// (or when the next hop is looked up), so the helper call stays off the per-packet path. Generic (skb) mode, which `ka run` uses on a veth,
/// hands XDP a whole GSO skb (linearized, up to 64 KiB) that the kernel segments on output; a
/// packet longer than the ingress interface's MTU can only be such an aggregate (native mode
/// never sees one), and answering it with "fragmentation needed" would stall the sender's TCP.
/// `bpf_check_mtu` needs kernel 5.12+, as `mtu_result` of `bpf_fib_lookup` does.
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

#[inline(always)]
fn no_next_hop(e: NoNextHop) -> u32 {
    stats::inc(match e {
        NoNextHop::Unknown => Counter::PassNoNexthop,
        NoNextHop::TooBig(_) => Counter::PassTooBig,
    });
    xdp_action::XDP_PASS
}

/// A packet to no service: a reply of a NAT flow (translated back to the VIP and sent to the
/// client), or someone else's traffic.
// Verifier/LLVM: a BPF-to-BPF call (stack frame of its own).
#[inline(never)]
fn nat_reply(ctx: &XdpContext, w: &mut Work) -> u32 {
    let Some(nat) = nat_reverse(&w.key) else {
        stats::inc(Counter::PassNotVip);
        return xdp_action::XDP_PASS;
    };
    if w.pkt.vlan_tags != 0 {
        stats::inc(Counter::PassLbUnsupported);
        return xdp_action::XDP_PASS;
    }
    let len = usize::from(w.pkt.ip_len);
    let (family, client) = (w.key.family, w.key.dst);
    if let Err(e) = forward::next_hop(ctx, w, family, &client, mtu_check_len(ctx, len, 0)) {
        return no_next_hop(e);
    }
    if forward::rewrite(ctx, &w.pkt, true, &nat.vip, nat.vport).is_none() {
        return xdp_action::XDP_ABORTED;
    }
    stats::add_service(nat.service, (ctx.data_end() - ctx.data()) as u64);
    stats::inc(Counter::LbNatReply);
    forward::transmit(ctx, &w.nh, None)
}
