//! The load balancer's one forwarding path, for TCP/UDP packets and for ICMP errors about their
//! flows alike (Katran's `process_packet`): the flow key (an ICMP error's is its embedded
//! flow's, reversed, from [`icmp::error_flow`]), the service, mastership gating, the backend,
//! the next hop, forwarding by the backend's method, counters; NAT replies (and NAT errors from
//! a real server) translated back to the VIP. What differs for an ICMP error is flagged where
//! it differs: no least-connection scheduling and no sync event (its flow is not new to
//! anyone), a too-big error is passed rather than answered, its NAT translates the embedded
//! packet too ([`icmp::translate`]), and it is counted `lb_icmp_forward` / `lb_icmp_reply`.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use ka_common::{
    lb::{FAMILY_V4, G_ANY_PORT, G_DST_MAC, G_NAT, G_SYNC_MASTER, METHOD_DR, METHOD_NAT, METHOD_TUN, NO_MASTER_SLOT},
    sched::NO_ID,
    stats::{forward_bundle, Counter},
    wire::IPPROTO_UDP,
};

use crate::{
    forward::{self, NoNextHop},
    icmp,
    parse::{L3, L4},
    lookup::{choose, flow_key, nat_reverse, record_nat, schedule_least, service, to_local_mac, NEED_LEAST},
    maps::KA_MASTER,
    scratch::{self, Work},
    stats,
};

/// Handles the packet stashed by the entry point while services are configured: a TCP/UDP
/// packet, or (`icmp`) an ICMP/ICMPv6 message, forwarded when it is an error about a VIP flow.
// Inlined into the entry point at its two sites, each with a constant `icmp` (a call less per
// packet, ~2 ns; the frames under it, `choose` and `send`, stay calls of their own, and the
// deepest chain is 400 of the 512 bytes since the connection insert's frame shrank).
#[inline(always)]
pub fn handle(ctx: &XdpContext, global_flags: u32, icmp: bool) -> u32 {
    let Some(w) = scratch::work() else {
        return xdp_action::XDP_PASS;
    };
    if icmp {
        if let Err(c) = icmp::error_flow(ctx, w) {
            stats::inc(c);
            return xdp_action::XDP_PASS;
        }
    } else if !flow_key(ctx, w) {
        return xdp_action::XDP_PASS;
    }
    let Some(svc) = service(w, global_flags & G_ANY_PORT != 0) else {
        if global_flags & G_NAT != 0 {
            return nat_reply(ctx, w, icmp);
        }
        stats::inc(if icmp { Counter::PassIcmpNotVip } else { Counter::PassNotVip });
        return xdp_action::XDP_PASS;
    };
    // Only the director the frame is addressed to forwards it (a flooded frame reaches all).
    if global_flags & G_DST_MAC != 0 && !to_local_mac(ctx) {
        stats::inc(Counter::PassNotOurMac);
        return xdp_action::XDP_PASS;
    }
    // SAFETY: a valid map value. Copied once: the packet sees one version of the service.
    crate::mem::copy(&mut w.svc, unsafe { &*svc });
    if let Some(verdict) = gate(w) {
        return verdict;
    }
    // The flow's backend. For an ICMP error, found the way the flow's packets find it (a miss
    // schedules and records the flow as its next packet would), but not by a least-connection
    // scheduler, whose choice is not the flow's: as IPVS, an error for no known connection is
    // not forwarded.
    let Some((mut id, new_flow)) = choose(w, !icmp) else {
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
    if new_flow && !icmp && global_flags & G_SYNC_MASTER != 0 {
        crate::sync::new_conn(w, id);
    }
    // From the parser (a valid IP packet's length).
    let len = usize::from(w.pkt.ip_len);
    let method = w.backend.method;
    if let Err(e) = forward::backend_next_hop(ctx, w, id, len) {
        // Added, not branched on (LLVM would duplicate the path below for each value).
        if let Some(s) = stats::Stats::get() {
            s.add(Counter::LbConnHit, u64::from(!new_flow));
        }
        if let NoNextHop::TooBig(mtu) = e {
            // An error about an error is never sent (it is passed, counted).
            if !icmp {
                let overhead = forward::tunnel_overhead(method, w.key.family);
                return icmp::too_big(ctx, w, mtu, overhead as u16);
            }
        }
        return no_next_hop(e);
    }
    send(ctx, w, id, if new_flow { SEND_NEW_FLOW } else { 0 } | if icmp { SEND_ICMP } else { 0 })
}

/// The verdict of [`handle`] for a TCP/UDP packet, whose parse the entry point did not count:
/// a verdict marked [`stats::COUNTED`] was counted with its bundle and comes back unmarked;
/// any other is counted here with the parser's counters (one lookup).
#[inline(always)]
pub fn verdict(action: u32) -> u32 {
    if action & stats::COUNTED != 0 {
        return action & !stats::COUNTED;
    }
    if let (Some(s), Some(w)) = (stats::Stats::get(), scratch::work()) {
        // What `Stats::parsed` counts for a TCP/UDP packet, from the stashed parse (Verifier:
        // map memory, so each counter is chosen by a compare, not indexed by its value).
        if w.pkt.vlan_tags > 0 {
            s.inc(Counter::Vlan);
        }
        s.inc(if w.pkt.l3 == L3::Ipv6 { Counter::Ipv6 } else { Counter::Ipv4 });
        s.inc(if w.pkt.l4 == L4::Udp { Counter::Udp } else { Counter::Tcp });
        s.verdict(action);
    }
    action
}

/// [`send`]: the flow is new (a NAT flow's reverse entry is recorded); else its backend was
/// found in the connection table (counted `lb_conn_hit`).
const SEND_NEW_FLOW: u32 = 1;
/// [`send`]: the packet is an ICMP error about the flow.
const SEND_ICMP: u32 = 2;

/// Forwards the packet of the flow in `w` to backend `id` (in `w.backend`, next hop in `w.nh`)
/// by the backend's method, and counts it. `how`: `SEND_*` bits. A TCP/UDP packet sent is
/// counted by one bundle (`ka_common::stats::forward_bundle`: the parser's family and
/// protocol counters, the method's, the verdict and `lb_conn_hit`), and its verdict comes back
/// marked [`stats::COUNTED`]; the entry point counts the parser's counters and the verdict of
/// any other outcome.
// Verifier/LLVM: a BPF-to-BPF call: its frame, and the NAT rewrite's under it, are not on top
// of the entry point's (this chain, down to `icmp::translate`, is the deepest: 400 bytes).
#[inline(never)]
fn send(ctx: &XdpContext, w: &mut Work, id: u32, how: u32) -> u32 {
    let icmp = how & SEND_ICMP != 0;
    let len = usize::from(w.pkt.ip_len);
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let method = w.backend.method;
    let action = match method {
        METHOD_DR => forward::transmit(ctx, &w.nh, None),
        METHOD_TUN => forward::encap(ctx, w, len),
        METHOD_NAT => {
            if !icmp && how & SEND_NEW_FLOW != 0 {
                record_nat(w);
            }
            let done = if icmp {
                icmp::translate(ctx, w, false, &w.backend.addr, w.backend.port)
            } else {
                forward::rewrite(ctx, &w.pkt, false, &w.backend.addr, w.backend.port)
            };
            if done.is_none() {
                if how & SEND_NEW_FLOW == 0 {
                    stats::inc(Counter::LbConnHit);
                }
                return xdp_action::XDP_ABORTED;
            }
            forward::transmit(ctx, &w.nh, None)
        }
        _ => {
            stats::inc(Counter::PassNoBackend);
            return xdp_action::XDP_PASS;
        }
    };
    // Verifier: made opaque, so what follows is checked once, not once per value.
    let hit = scratch::opaque(how & SEND_NEW_FLOW) == 0;
    let sent = action == xdp_action::XDP_TX || action == xdp_action::XDP_REDIRECT;
    if sent {
        stats::add_service(w.svc.id, bytes);
        stats::add_backend(id, bytes);
        if !icmp {
            // Sent only after a parse of an untagged IP packet (`gate`).
            let i = forward_bundle(
                u32::from(method).wrapping_sub(1),
                w.key.family != FAMILY_V4,
                w.key.proto == IPPROTO_UDP,
                action == xdp_action::XDP_REDIRECT,
                hit,
            );
            stats::bundle(i);
            return action | stats::COUNTED;
        }
    }
    // Otherwise counted one by one (the verdict by the entry point).
    if let Some(s) = stats::Stats::get() {
        s.add(Counter::LbConnHit, u64::from(hit));
        if sent {
            s.inc(Counter::LbIcmpForward);
            s.inc(match method {
                METHOD_DR => Counter::LbDr,
                METHOD_TUN => Counter::LbTun,
                _ => Counter::LbNat,
            });
        }
    }
    action
}

/// Whether this node may serve the packet of service `w.svc`: `Some(XDP_PASS)`, counted, when
/// it is not MASTER for the VIP's VRRP instance or the frame is VLAN-tagged (its egress would
/// be a VLAN device, which XDP cannot transmit on).
#[inline(always)]
fn gate(w: &Work) -> Option<u32> {
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

/// Counts why there is no next hop and passes the packet.
#[inline(always)]
fn no_next_hop(e: NoNextHop) -> u32 {
    stats::inc(match e {
        NoNextHop::Unknown => Counter::PassNoNexthop,
        NoNextHop::TooBig(_) => Counter::PassTooBig,
    });
    xdp_action::XDP_PASS
}

/// A packet to no service: a reply of a NAT flow, or (`icmp`) an error from the real-server
/// side of one (flow in `w.key`, as the real server's replies), translated back to the VIP and
/// sent to the client; else someone else's traffic.
// Verifier/LLVM: a BPF-to-BPF call (stack frame of its own).
#[inline(never)]
fn nat_reply(ctx: &XdpContext, w: &mut Work, icmp: bool) -> u32 {
    let Some(nat) = nat_reverse(&w.key) else {
        stats::inc(if icmp { Counter::PassIcmpNotVip } else { Counter::PassNotVip });
        return xdp_action::XDP_PASS;
    };
    if w.pkt.vlan_tags != 0 {
        stats::inc(Counter::PassLbUnsupported);
        return xdp_action::XDP_PASS;
    }
    let len = usize::from(w.pkt.ip_len);
    let (family, client) = (w.key.family, w.key.dst);
    if let Err(e) = forward::next_hop(ctx, w, family, &client, forward::mtu_check_len(ctx, len, 0)) {
        return no_next_hop(e);
    }
    let done = if icmp {
        icmp::translate(ctx, w, true, &nat.vip, nat.vport)
    } else {
        forward::rewrite(ctx, &w.pkt, true, &nat.vip, nat.vport)
    };
    if done.is_none() {
        return xdp_action::XDP_ABORTED;
    }
    stats::add_service(nat.service, (ctx.data_end() - ctx.data()) as u64);
    if let Some(s) = stats::Stats::get() {
        s.inc(Counter::LbNatReply);
        if icmp {
            s.inc(Counter::LbIcmpReply);
        }
    }
    forward::transmit(ctx, &w.nh, None)
}
