//! The VRRP fast path of `ka_xdp` (see `ka_common::vrrp_fast` for the contract): validates every
//! advert with the ka-common codec rules, refreshes the master's last-seen timestamp on
//! steady-state adverts, drops below-reference adverts beyond each instance's budget, and
//! reports changes to the engine on a ring buffer.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_jiffies64, bpf_ktime_get_ns},
    programs::XdpContext,
};
use ka_common::{
    lb::{FAMILY_V4, FAMILY_V6, G_VRRP_DROP_UNKNOWN},
    stats::Counter,
    vrrp::{
        check_adver_int_v2, check_auth, check_len, check_ttl, check_version_type, Auth, DropReason,
        Family, Version, VrrpHdr, VRRP_AUTH_DATA_LEN, VRRP_HDR_LEN,
    },
    vrrp_fast::{
        below_reference, gt16, rate_admit, vrid_index, VrrpEvent, VrrpInstance, VrrpKey, VrrpRate, NS_PER_CENTI,
        VRRP_CSUM_NO_PSEUDO, VRRP_CSUM_OLD_UNICAST, VRRP_EV_HIGHER_PRIO, VRRP_EV_INTERVAL_CHANGE,
        VRRP_EV_LOWER_PRIO, VRRP_EV_NEW_MASTER, VRRP_EV_PRIO_CHANGE, VRRP_EV_RESIGN,
        VRRP_F_CHECK_TTL, VRRP_F_DROP_INVALID, VRRP_F_DROP_STEADY, VRRP_F_MASTER, VRRP_VRID_SLOTS,
    },
    wire::{Ipv4Hdr, Ipv6Hdr, IPPROTO_AH, IPPROTO_VRRP},
};

use crate::{
    csum::{fold, sum_packet},
    maps::{KA_VRRP, KA_VRRP_EVENTS, KA_VRRP_RATE, KA_VRRP_SEEN, KA_VRRP_VRID},
    parse::L3,
    ptr::{load32, read_at},
    scratch::Work,
    stats,
};

// `mem::eq16_words` reads the known master's address a word at a time.
const _: () = assert!(core::mem::offset_of!(VrrpInstance, master_addr) % 4 == 0);

/// What the IP header says about an advert.
/// (Addresses go to `Work::src` / `Work::dst`.)
struct Ip {
    family: u8,
    ttl: u8,
    end: usize,
}

#[inline(always)]
fn ip_info(ctx: &XdpContext, w: &mut Work) -> Option<Ip> {
    let off = w.pkt.l3_off;
    match w.pkt.l3 {
        L3::Ipv4 => {
            // One load per field, not a copy of the header (an align-1 struct copy is a byte
            // load and store per byte on BPF): TTL at 8, the addresses at 12 and 16.
            let p = crate::ptr::ptr_at::<Ipv4Hdr>(ctx, off)? as *const u8;
            // SAFETY: bounds-checked by ptr_at (20 bytes); A16 is 4-aligned.
            let ttl = unsafe {
                crate::mem::store_v4(&mut w.src.0, load32(p.add(12)).to_ne_bytes());
                crate::mem::store_v4(&mut w.dst.0, load32(p.add(16)).to_ne_bytes());
                *p.add(8)
            };
            Some(Ip {
                family: FAMILY_V4,
                ttl,
                // The total length, checked against the frame by the parser.
                end: off + usize::from(w.pkt.ip_len),
            })
        }
        L3::Ipv6 => {
            let ip = crate::ptr::ptr_at::<Ipv6Hdr>(ctx, off)?;
            // SAFETY: bounds-checked by ptr_at; copied a word at a time (A16 is 4-aligned, the
            // packet side may be unaligned: see mem::load16).
            unsafe {
                crate::mem::load16(&mut w.src.0, &(*ip).src);
                crate::mem::load16(&mut w.dst.0, &(*ip).dst);
                Some(Ip {
                    family: FAMILY_V6,
                    ttl: (*ip).hop_limit,
                    end: off + 40 + (*ip).payload_len(),
                })
            }
        }
        L3::Other => None,
    }
}

/// An IPv4 packet of protocol 51 (IPsec AH), the form of keepalived's `auth_type AH` adverts.
#[inline(always)]
pub fn is_ah_v4(pkt: &crate::parse::Parsed) -> bool {
    pkt.l3 == L3::Ipv4 && pkt.ip_proto == IPPROTO_AH
}

/// keepalived's `auth_type AH` adverts (IPv4 protocol 51, the VRRP message after the AH
/// header, `ka_common::vrrp::ah`) are passed to userspace, and counted when the AH header says
/// VRRP follows; other AH traffic passes uncounted, as before. Only userspace validates AH:
/// checking the ICV here would mean two MD5 passes (HMAC) over the whole packet in bounded
/// loops, for one advert per second per instance (AH is VRRPv2-only, whose interval is whole
/// seconds), and the anti-replay counter is state the engine shares between sending and
/// receiving. Not worth it: AH instances are left out of the fast path altogether.
#[inline(always)]
pub fn pass_ah(ctx: &XdpContext, pkt: &crate::parse::Parsed) -> u32 {
    // Verifier: the AH header's first word (Next Header, Payload Len, RESERVED), not its first
    // byte: for a 1-byte read LLVM turns `p + 1 > end` into `p >= end`, from which the verifier
    // learns no readable range.
    if let Some(word) = read_at::<[u8; 4]>(ctx, pkt.l4_off) {
        if word[0] == IPPROTO_VRRP {
            stats::inc(Counter::VrrpAhPass);
        }
    }
    xdp_action::XDP_PASS
}

/// Handles an advert while the fast path is on; `counters`: the entry point's lookup of this
/// CPU's counters, for the steady advert's count.
// Inlined into the entry point: a BPF-to-BPF call costs the argument moves and spills around
// it on every advert; the path's deeper calls (`admit`) keep the chain within 512 bytes.
#[inline(always)]
pub fn handle(ctx: &XdpContext, global_flags: u32, counters: Option<stats::Stats>) -> u32 {
    let Some(w) = crate::scratch::work() else {
        return xdp_action::XDP_PASS;
    };
    let pkt = w.pkt;
    let Some(ip) = ip_info(ctx, w) else {
        return xdp_action::XDP_PASS;
    };
    let key = VrrpKey {
        ifindex: ctx.ingress_ifindex() as u32,
        vrid: 0,
        family: ip.family,
        _pad: [0; 2],
    };
    let drop_unknown = global_flags & G_VRRP_DROP_UNKNOWN != 0;
    // The 8-byte header as two word loads (see `ip_info`).
    let Some(hp) = crate::ptr::ptr_at::<VrrpHdr>(ctx, pkt.l4_off) else {
        return invalid(DropReason::TooShort, drop_unknown);
    };
    // SAFETY: bounds-checked by ptr_at (8 bytes).
    let hdr: VrrpHdr = unsafe {
        let p = hp as *const u8;
        bytemuck::cast([load32(p), load32(p.add(4))])
    };
    if ip.end < pkt.l4_off + VRRP_HDR_LEN {
        return invalid(DropReason::TooShort, drop_unknown);
    }
    let key = VrrpKey {
        vrid: hdr.vrid,
        ..key
    };
    let Some(inst) = instance(&key) else {
        // RFC 5798 §7.1: the VRID must be configured on the receiving interface.
        return invalid(DropReason::VridMismatch, drop_unknown);
    };
    match validate(ctx, w, inst, &ip, &hdr) {
        Ok(interval) => classify(&key, w, inst, &hdr, interval, counters),
        Err(Some(reason)) => invalid(reason, inst.flags & VRRP_F_DROP_INVALID != 0),
        Err(None) => {
            stats::inc(Counter::VrrpPassLong);
            xdp_action::XDP_PASS
        }
    }
}

/// The instance of `key`: its copy in `KA_VRRP_VRID` (an array lookup the JIT inlines, then
/// at most [`VRRP_VRID_SLOTS`] ifindex compares), else `KA_VRRP` (the instances of a VRID on
/// more interfaces than the array's slots).
///
/// The value is read in place (no 56-byte copy per advert). Userspace may rewrite it meanwhile
/// (a state change): an advert read half before, half after is classified against a mix of
/// both, which at worst reports one change or stamps one steady advert that the engine's next
/// look settles; a copy only narrowed that window.
#[inline(always)]
fn instance(key: &VrrpKey) -> Option<&'static VrrpInstance> {
    if let Some(e) = KA_VRRP_VRID.get_ptr(vrid_index(key.vrid, key.family)) {
        // A free slot's ifindex is 0, which no interface has.
        if key.ifindex != 0 {
            for i in 0..VRRP_VRID_SLOTS {
                // SAFETY: a valid map value; `i` is below the array lengths.
                unsafe {
                    if (*e).ifindex[i] == key.ifindex {
                        return Some(&(*e).inst[i]);
                    }
                }
            }
        }
    }
    // SAFETY: a valid map value (see above).
    KA_VRRP.get_ptr(key).map(|p| unsafe { &*p })
}

#[inline(always)]
fn invalid(reason: DropReason, drop: bool) -> u32 {
    stats::inc(Counter::vrrp_drop(reason));
    if drop {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

/// The receive checks of RFC 5798 §7.1 / RFC 3768 §7.1 in RFC order, with the ka-common rules.
/// Returns the advert interval in centiseconds.
// Inlined into `handle` (a BPF-to-BPF call costs the spills around it); `handle` itself is
// the call that keeps this path's frame out of the caller's 512-byte frame.
#[inline(always)]
fn validate(ctx: &XdpContext, w: &Work, inst: &VrrpInstance, ip: &Ip, hdr: &VrrpHdr) -> Result<u16, Option<DropReason>> {
    let pkt = &w.pkt;
    if inst.flags & VRRP_F_CHECK_TTL != 0 {
        check_ttl(ip.ttl)?;
    }
    let version = Version::from_u8(inst.version).ok_or(DropReason::BadVersion)?;
    check_version_type(hdr.vers_type, version)?;
    let family = if ip.family == FAMILY_V4 {
        Family::V4
    } else {
        Family::V6
    };
    let len = ip.end - pkt.l4_off;
    check_len(len, version, family, hdr.count_ip)?;
    // The pseudo-header's addresses summed with the message's words, its protocol and length
    // with the tail (see `pseudo_words`).
    let (words, pseudo) = pseudo_words(w, inst, version == Version::V3, family == Family::V4);
    let Some(body) = sum_packet(ctx, pkt.l4_off, len, words) else {
        return Err(None);
    };
    let proto_len = if pseudo { u32::from(IPPROTO_VRRP) + (len as u32 & 0xffff) } else { 0 };
    if fold(body + proto_len) != 0xffff {
        return Err(Some(DropReason::BadChecksum));
    }
    if version == Version::V2 {
        let auth_data: [u8; VRRP_AUTH_DATA_LEN] = if family == Family::V4 {
            let at = pkt.l4_off + VRRP_HDR_LEN + usize::from(hdr.count_ip) * 4;
            read_at(ctx, at).ok_or(DropReason::TooShort)?
        } else {
            [0; VRRP_AUTH_DATA_LEN]
        };
        let local = if inst.auth_type == 1 {
            Auth::Pass(inst.auth_data)
        } else {
            Auth::None
        };
        check_auth(Version::V2, hdr.v2_auth_type(), &auth_data, &local)?;
        check_adver_int_v2(hdr.v2_adver_int(), inst.adver_int_centis)?;
        Ok(u16::from(hdr.v2_adver_int()) * 100)
    } else {
        Ok(hdr.v3_max_adver_int())
    }
}

/// The checksum's pseudo-header (ka-common's [`PseudoHeader`](ka_common::vrrp::PseudoHeader),
/// with the instance's VRRPv3 flavour): the sum of its addresses' words as they lie in memory
/// (for [`sum_packet`]: four loads and adds per address, where the byte-wise `partial_sum` was
/// a call and a load per byte), and whether there is one (then its protocol and length are
/// added too). An IPv4 address is a 16-byte `A16` whose last 12 bytes are zero.
#[inline(always)]
fn pseudo_words(w: &Work, inst: &VrrpInstance, v3: bool, v4: bool) -> (u64, bool) {
    if !v3 {
        return (0, false);
    }
    if !v4 {
        // SAFETY: `w.src`/`w.dst` are A16 (4-aligned, 16 bytes).
        return (unsafe { crate::mem::sum16_words(&w.src.0) + crate::mem::sum16_words(&w.dst.0) }, true);
    }
    // IPv4: the first word of each A16 (the rest is zero).
    let word = |a: &crate::scratch::A16| u64::from(u32::from_ne_bytes([a.0[0], a.0[1], a.0[2], a.0[3]]));
    match inst.csum_mode {
        VRRP_CSUM_NO_PSEUDO => (0, false),
        // The group (4-aligned in the 4-aligned instance).
        VRRP_CSUM_OLD_UNICAST => (word(&w.src) + u64::from(u32::from_ne_bytes(inst.group_v4)), true),
        _ => (word(&w.src) + word(&w.dst), true),
    }
}

/// Whether a below-reference advert fits in its instance's budget (`ka_common::vrrp_fast::
/// rate_admit` on the instance's `KA_VRRP_RATE` entry, created on first use).
// Verifier/LLVM: a BPF-to-BPF call, keeping `classify`'s frame small.
#[inline(never)]
fn admit(key: &VrrpKey, w: &Work, inst: &VrrpInstance, prio: u8) -> bool {
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    // A zero interval cannot be configured; one second keeps the budget finite anyway.
    let window = match u64::from(inst.adver_int_centis) * NS_PER_CENTI {
        0 => 100 * NS_PER_CENTI,
        ns => ns,
    };
    let entry = match KA_VRRP_RATE.get_ptr_mut(key) {
        Some(p) => p,
        None => {
            // Two CPUs may both insert: the second write wins, a fresh entry either way.
            let _ = KA_VRRP_RATE.insert(key, &VrrpRate::default(), 0);
            match KA_VRRP_RATE.get_ptr_mut(key) {
                Some(p) => p,
                // The LRU map cannot hold it (cannot happen at its size): no budget to keep,
                // so the advert goes to the engine as before.
                None => return true,
            }
        }
    };
    // SAFETY: a valid map value pointer; concurrent CPUs may race on it (see
    // `VRRP_RATE_PER_INTERVAL`), which at worst lets one more advert through.
    rate_admit(unsafe { &mut *entry }, now, window, &w.src.0, prio)
}

/// Steady state (counted in `counters`), a change for the engine, or a below-reference advert
/// beyond its budget.
#[inline(always)]
fn classify(key: &VrrpKey, w: &Work, inst: &VrrpInstance, hdr: &VrrpHdr, interval: u16, counters: Option<stats::Stats>) -> u32 {
    let prio = hdr.priority;
    // Steady adverts are never below the reference (their priority is the master's).
    if below_reference(inst, &w.src.0, prio) && !admit(key, w, inst, prio) {
        stats::inc(Counter::VrrpLowerPrioLimited);
        return xdp_action::XDP_DROP;
    }
    let kind = if prio == 0 {
        VRRP_EV_RESIGN
    } else if inst.flags & VRRP_F_MASTER != 0 {
        if prio > inst.local_prio || (prio == inst.local_prio && gt16(&w.src.0, &inst.local_addr)) {
            VRRP_EV_HIGHER_PRIO
        } else {
            VRRP_EV_LOWER_PRIO
        }
    // SAFETY: `w.src` is an A16 (4-aligned); `master_addr` lies at offset 16 of a
    // VrrpInstance (repr(C), 4-aligned), itself at a multiple of 4 of the 8-aligned map value
    // (`KA_VRRP`'s, or a `VrrpVridSlots`, all of whose fields are 4-aligned).
    } else if !unsafe { crate::mem::eq16_words(&w.src.0, &inst.master_addr) } {
        VRRP_EV_NEW_MASTER
    } else if prio != inst.master_prio {
        VRRP_EV_PRIO_CHANGE
    } else if interval != inst.master_adver_int_centis {
        VRRP_EV_INTERVAL_CHANGE
    } else {
        // The tick count (`jiffies_64`): the verifier inlines the helper into two loads, where
        // the coarse clock was a helper call (~3 ns, a tenth of this path). Userspace turns it
        // into CLOCK_MONOTONIC time with the kernel's tick rate (`lb::kclock`): the time of
        // the tick the advert came in, as the coarse clock said.
        // SAFETY: plain helper call (kernel 5.5+).
        let now = unsafe { bpf_jiffies64() };
        // The instance's array slot: no second hash lookup (an out-of-range slot, which
        // userspace never writes, finds nothing and stamps nothing).
        if let Some(p) = KA_VRRP_SEEN.get_ptr_mut(u32::from(inst.seen_slot)) {
            // SAFETY: an aligned u64 store; userspace only reads it (and zeroes a new slot).
            unsafe { *p = now };
        }
        if let Some(s) = counters {
            s.inc(Counter::VrrpSteady);
        }
        return if inst.flags & VRRP_F_DROP_STEADY != 0 {
            xdp_action::XDP_DROP
        } else {
            xdp_action::XDP_PASS
        };
    };
    match KA_VRRP_EVENTS.reserve::<VrrpEvent>(0) {
        Some(mut e) => {
            // SAFETY: plain helper call.
            let ts_ns = unsafe { bpf_ktime_get_ns() };
            e.write(VrrpEvent {
                ts_ns,
                ifindex: key.ifindex,
                vrid: key.vrid,
                family: key.family,
                version: hdr.version(),
                kind,
                priority: prio,
                _pad: 0,
                adver_int_centis: interval,
                _pad2: 0,
                src: w.src.0,
            });
            e.submit(0);
            stats::inc(Counter::VrrpChange);
        }
        None => stats::inc(Counter::VrrpEventLost),
    }
    xdp_action::XDP_PASS
}
