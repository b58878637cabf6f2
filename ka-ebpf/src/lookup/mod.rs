//! The lookup layer: the flow key of a packet, whether its destination may be a VIP, its
//! service, and the backend it goes to (the connection table, [`conn`], then the persistence
//! template, then the service's scheduler, [`sched`] for the least-connection family). The
//! kernel only reads tables that userspace computed; it writes the connection, persistence and
//! NAT tables. Above the scratch memory, below forwarding and the paths.

pub mod conn;
pub mod sched;

use aya_ebpf::{
    helpers::{bpf_jiffies64, bpf_ktime_get_ns},
    programs::XdpContext,
};
use ka_common::{
    lb::{
        addr_hash, and_mask, conn_hash, conn_hash4, fallback_slot, local_mac_slot, flow_hash, flow_hash4, sched_uses_dests, svc_slot4_words, vip_filter_fold,
        service_template_dst, Backend, ConnValue, FlowKey, NatValue, ServiceKey,
        ServiceKey4, ServiceValue, BACKEND_F_DOWN, FALLBACK_PROBES, FAMILY_V4, FAMILY_V6,
        METHOD_NAT, SCHED_DST_HASH, SCHED_MAGLEV, SCHED_ROUND_ROBIN, SCHED_SRC_HASH,
        SVC_F_ALL_PORTS, SVC_F_COUNT, SVC_F_FALLBACK, SVC_F_OPS, SVC_F_PERSIST,
        SVC_F_PERSIST_SERVICE,
    },
    sched::{is_assured, new_state, sched_is_consistent, CONN_F_ASSURED, CONN_F_COUNTED, NO_ID},
    stats::Counter,
    wire::{Ipv4Hdr, Ipv6Hdr, IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_SYN},
};

use crate::{
    maps::{
        KA_BACKENDS, KA_LOCAL_MACS, KA_LOCAL_MAC_SLOTS, KA_NAT, KA_PERSIST, KA_RR, KA_SERVICES4, KA_SERVICES6, KA_SVC_SLOTS4, KA_TABLES,
        KA_VIP_FILTER,
    },
    mem,
    parse::{Parsed, L3},
    ptr::{load32, ptr_at},
    scratch::Work,
    stats,
};

/// Whether the frame's destination MAC is one of `KA_LOCAL_MACS`: its slot of
/// `KA_LOCAL_MAC_SLOTS` first (an inlined array lookup and one compare), the hash map only when
/// the slot holds another MAC or none.
#[inline(always)]
pub fn to_local_mac(ctx: &XdpContext) -> bool {
    let Some(eth) = ptr_at::<ka_common::wire::EthHdr>(ctx, 0) else { return false };
    // The hash map's key: the MAC, then two zero bytes. Copied to the stack, then read as one
    // native-endian word (Verifier: two unaligned loads of the frame instead left scalars
    // that split the states of the rest of the path: 835k verified instructions, not 642k).
    let mut kb = [0u8; 8];
    // SAFETY: bounds-checked by ptr_at.
    kb[..6].copy_from_slice(unsafe { &(*eth).dst });
    let key = u64::from_ne_bytes(kb);
    let low = (key >> 16) as u32;
    if KA_LOCAL_MAC_SLOTS.get(local_mac_slot(low)).is_some_and(|s| *s == key) {
        return true;
    }
    // SAFETY: a lookup; the value is not read.
    unsafe { KA_LOCAL_MACS.get(&kb).is_some() }
}

/// Fills `w.key` with the 5-tuple of the stashed TCP/UDP packet (and `w.key4` for IPv4);
/// false if it has no IP header. Every key is written a word at a time (`mem::set_words`):
/// the ports come as one word from the parser, protocol and family share one.
#[inline(always)]
pub fn flow_key(ctx: &XdpContext, w: &mut Work) -> bool {
    let pkt = &w.pkt;
    let (ports, proto) = (pkt.ports, u32::from(pkt.ip_proto));
    match pkt.l3 {
        L3::Ipv4 => {
            let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, pkt.l3_off) else {
                return false;
            };
            let p = ip as *const u8;
            // SAFETY: bounds-checked by ptr_at: source at 12, destination at 16.
            let (src, dst) = unsafe { (load32(p.add(12)), load32(p.add(16))) };
            // FlowKey4: src, dst, ports, proto and a 3-byte pad (little-endian BPF: the
            // protocol is the word's low byte).
            mem::set_words(&mut w.key4, [src, dst, ports, proto]);
            // FlowKey: the addresses in 16 bytes, ports, then proto, family and pad.
            mem::set_words(
                &mut w.key,
                [src, 0, 0, 0, dst, 0, 0, 0, ports, proto | u32::from(FAMILY_V4) << 8],
            );
        }
        L3::Ipv6 => {
            let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, pkt.l3_off) else {
                return false;
            };
            let k = &mut w.key;
            // SAFETY: as above; the packet side may be unaligned (see mem::load16).
            unsafe {
                mem::load16(&mut k.src, &(*ip).src);
                mem::load16(&mut k.dst, &(*ip).dst);
            }
            // SAFETY: FlowKey is 4-aligned; words 8 and 9 are the ports and proto/family/pad.
            unsafe {
                let words = k as *mut FlowKey as *mut u32;
                core::ptr::write_volatile(words.add(8), ports);
                core::ptr::write_volatile(words.add(9), proto | u32::from(FAMILY_V6) << 8);
            }
        }
        L3::Other => return false,
    }
    true
}

/// Whether the destination of the parsed IP packet may be a VIP: its bit of the VIP filter
/// (`ka_common::lb::VIP_FILTER_MAP`) is set. A clear bit is a certain no (before the service
/// hash lookup, and before the packet is stashed). The address was folded by the parser
/// ([`Parsed::dst_fold`]): no second read of the header.
#[inline(always)]
pub fn maybe_vip(pkt: &Parsed) -> bool {
    if pkt.l3 == L3::Other {
        return true;
    }
    maybe_vip_fold(pkt.dst_fold)
}

/// [`maybe_vip`] of a destination folded to one word ([`Parsed::dst_fold`]).
#[inline(always)]
pub fn maybe_vip_fold(fold: u32) -> bool {
    let bit = vip_filter_fold(fold);
    KA_VIP_FILTER.get(bit >> 6).is_none_or(|w| w & (1 << (bit & 63)) != 0)
}

/// Derives `w.key4` from `w.key` (an IPv4 flow written into `w.key` directly).
#[inline(always)]
pub fn sync_key4(w: &mut Work) {
    if let Some(k4) = w.key.v4() {
        w.key4 = k4;
    }
}

/// The service of the flow in `w.key` (and `w.key4`), from its family's map: the key of its
/// (VIP, port, protocol), else, when `any_port` (global [`ka_common::lb::G_ANY_PORT`]: port-0 services
/// exist), the VIP's port-0 key (IPVS looks a port-zero service up the same way, after the
/// exact one). An IPv4 key is looked up in its slot of `KA_SVC_SLOTS4` first ([`service4`]).
#[inline(always)]
pub fn service(w: &Work, any_port: bool) -> Option<*const ServiceValue> {
    if w.key.family == FAMILY_V4 {
        let k = &w.key4;
        let addr = u32::from_ne_bytes(k.dst);
        // The key's second word: port, protocol, zero padding (little-endian BPF: the port's
        // bytes are the word's low half).
        let rest = u32::from(u16::from_ne_bytes(k.dport)) | u32::from(k.proto) << 16;
        if let Some(v) = service4(addr, rest) {
            return Some(v);
        }
        if !any_port {
            return None;
        }
        service4(addr, rest & 0xffff_0000)
    } else {
        let k = &w.key;
        let mut key = ServiceKey {
            addr: k.dst,
            port: k.dport,
            proto: k.proto,
            family: k.family,
        };
        if let Some(v) = KA_SERVICES6.get_ptr(&key) {
            return Some(v);
        }
        if !any_port {
            return None;
        }
        key.port = [0; 2];
        KA_SERVICES6.get_ptr(&key)
    }
}

/// The IPv4 service whose key's words are `addr` and `rest` (see `ServiceKey4`): its slot of
/// `KA_SVC_SLOTS4` when the slot holds that key (an array lookup the JIT inlines and two
/// compares), else `KA_SERVICES4` (a hash lookup: the slot is another key's, or not written).
#[inline(always)]
fn service4(addr: u32, rest: u32) -> Option<*const ServiceValue> {
    if let Some(s) = KA_SVC_SLOTS4.get_ptr(svc_slot4_words(addr, rest)) {
        // SAFETY: a valid map value; ServiceKey4 is two 4-aligned words at its start.
        let (a, r) = unsafe {
            let words = s as *const u32;
            (core::ptr::read_volatile(words), core::ptr::read_volatile(words.add(1)))
        };
        if a == addr && r == rest {
            // SAFETY: as above.
            return Some(unsafe { &(*s).value as *const ServiceValue });
        }
    }
    let [b0, b1, b2, b3] = rest.to_ne_bytes();
    let k = ServiceKey4 {
        addr: addr.to_ne_bytes(),
        port: [b0, b1],
        proto: b2,
        _pad: b3,
    };
    KA_SERVICES4.get_ptr(&k)
}

/// The connection-table hash of the flow in `w.key` (`w.key4` for IPv4: the same value,
/// hashed from the shorter key): its set and check word.
#[inline(always)]
pub fn conn_hash_of(w: &Work) -> u32 {
    if w.key.family == FAMILY_V4 {
        conn_hash4(&w.key4)
    } else {
        conn_hash(&w.key)
    }
}

/// The Maglev / tunnel-source hash of the flow in `w.key` (`w.key4` for IPv4: the same value,
/// hashed from the shorter key).
#[inline(always)]
pub fn hash_of(w: &Work) -> u32 {
    if w.key.family == FAMILY_V4 {
        flow_hash4(&w.key4)
    } else {
        flow_hash(&w.key)
    }
}

/// The connection-table clock: low 32 bits of `bpf_jiffies64` (inlined by the verifier), never
/// 0 (a free way).
#[inline(always)]
pub fn conn_now() -> u32 {
    // SAFETY: plain helper call.
    (unsafe { bpf_jiffies64() } as u32) | 1
}

/// The backend recorded for the flow in its family's connection table (the entry's stamp
/// refreshed and its TCP state moved by the packet's flags; an expired entry is a miss), or
/// `NO_ID`.
// Inlined (one call less per established packet): its paths end in one sentinel-or-id value
// the caller branches on once.
#[inline(always)]
fn conn(w: &Work, hash: u32, now: u32, tcp_flags: u8) -> u32 {
    let found = if w.key.family == FAMILY_V4 {
        conn::conn4_get(&w.key4, hash, now, tcp_flags)
    } else {
        conn::conn6_get(&w.key, hash, now, tcp_flags)
    };
    found.unwrap_or(NO_ID)
}

/// Records the flow's backend (copied in `w.backend`) in its family's connection table, in the
/// state the packet's flags give a new entry, counted when the service keeps counts. An
/// unassured entry (a SYN, a first UDP datagram) counts towards this CPU's flood mode
/// ([`conn::flood`]); in flood mode it is not recorded at all for a consistent-hash service
/// (the scheduler answers the same for the flow's next packets), and for another scheduler it
/// never takes an assured way (`lb_conn_set_full` when the set holds nothing else).
// Verifier/LLVM: a BPF-to-BPF call (as `conn`).
#[inline(never)]
fn conn_insert(w: &mut Work, hash: u32, backend: u32, now: u32, tcp_flags: u8) {
    let mut state = new_state(w.key.proto, tcp_flags);
    if w.svc.flags & SVC_F_COUNT != 0 {
        state |= CONN_F_COUNTED;
    }
    let flood = if is_assured(state) { 0 } else { conn::flood(w, now) };
    if flood != 0 && sched_is_consistent(w.svc.sched) {
        stats::inc(Counter::LbConnFloodSkip);
        return;
    }
    // Verifier: the flood answer made opaque, so the table walk below is checked once, not
    // once in and once out of flood mode.
    let keep_assured = crate::scratch::opaque(flood);
    let put = if w.key.family == FAMILY_V4 {
        conn::conn4_put(&w.key4, hash, backend, now, state, keep_assured)
    } else {
        conn::conn6_put(&w.key, hash, backend, now, state, keep_assured)
    };
    if put == conn::PUT_DONE {
        conn::bind(backend, state, w.backend.uthreshold);
    }
}

/// Records a flow a MASTER synced (`w.key`, backend `backend` of service `w.svc`, or of no
/// known service when `counted` is false) as an established connection (assured), counted when
/// the service keeps counts: the BACKUP's counts then include the flows it would take over, as
/// IPVS's backup binds synced connections to their destinations.
#[inline(always)]
pub fn conn_install(w: &Work, hash: u32, backend: u32, counted: bool, uthreshold: u32) {
    let mut state = new_state(w.key.proto, ka_common::wire::TCP_ACK);
    if w.key.proto != IPPROTO_TCP {
        state |= CONN_F_ASSURED;
    }
    if counted {
        state |= CONN_F_COUNTED;
    }
    let now = conn_now();
    let put = if w.key.family == FAMILY_V4 {
        conn::conn4_put(&w.key4, hash, backend, now, state, 0)
    } else {
        conn::conn6_put(&w.key, hash, backend, now, state, 0)
    };
    if put == conn::PUT_DONE {
        conn::bind(backend, state, uthreshold);
    }
}

#[inline(always)]
fn usable(id: u32, out: &mut Backend) -> bool {
    let Some(b) = KA_BACKENDS.get(id) else {
        return false;
    };
    if b.family == 0 || b.flags & BACKEND_F_DOWN != 0 {
        return false;
    }
    mem::copy(out, b);
    true
}

/// Picks the backend of `w.key` in service `w.svc` (see [`pick`]) and leaves it in
/// `w.backend`; a real server whose port is 0 (an all-port NAT service) keeps the packet's
/// port, so `w.backend.port` is the port the flow goes to. Returns the backend id and whether
/// the flow is new (false: found in the connection table, which the caller counts
/// `lb_conn_hit`); `None`: no backend available. A new flow of a least-connection service
/// is answered [`NEED_LEAST`] (with `least_conn` only; `None` without).
// Verifier/LLVM: a BPF-to-BPF call (stack frame of its own).
#[inline(never)]
pub fn choose(w: &mut Work, least_conn: bool) -> Option<(u32, bool)> {
    let picked = pick(w, least_conn)?;
    if picked.0 != NEED_LEAST {
        keep_port(w);
    }
    Some(picked)
}

/// A real server on port 0 (an all-port NAT service) takes the packet's port.
#[inline(always)]
fn keep_port(w: &mut Work) {
    if w.backend.port == [0; 2] {
        w.backend.port = w.key.dport;
    }
}

/// The connection table first (not for a TCP SYN, which opens a new connection, nor for a
/// datagram of a one-packet service), then the client's persistence template, then the
/// scheduler (a least-connection scheduler is handed to [`schedule_least`]).
#[inline(always)]
fn pick(w: &mut Work, least_conn: bool) -> Option<(u32, bool)> {
    let svc = &w.svc;
    let persist = svc.flags & SVC_F_PERSIST != 0;
    // `ops`: IPVS schedules each UDP datagram of a one-packet service on its own
    // (IP_VS_CONN_F_ONE_PACKET, UDP only): no connection entry is looked up or recorded.
    let ops = svc.flags & SVC_F_OPS != 0 && w.key.proto == IPPROTO_UDP;
    // A SYN without ACK opens a connection: schedule it afresh, as Katran does (the entry a
    // reused 5-tuple left behind would only pin the new connection to the old server, and the
    // lookup is a hash computation and a bucket walk saved on every new flow). A retransmitted
    // SYN gets the same answer from the scheduler unless the backend set changed in between.
    let tcp_flags = if w.key.proto == IPPROTO_TCP { w.pkt.tcp_flags } else { 0 };
    let syn = tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    // The connection table's hash (cheap); the scheduler's only once the table missed.
    let chash = conn_hash_of(w);
    let tick = conn_now();
    let id = if syn || ops { NO_ID } else { conn(w, chash, tick, tcp_flags) };
    if id != NO_ID {
        if usable(id, &mut w.backend) {
            // Counted `lb_conn_hit` by the caller's exit (with the packet's bundle).
            return Some((id, false));
        }
        stats::inc(Counter::LbReschedule);
    }
    let hash = hash_of(w);
    // SAFETY: plain helper call.
    let now = if persist {
        unsafe { bpf_ktime_get_ns() }
    } else {
        0
    };
    if persist {
        // IPVS's templates: <proto, client, vip, vport> for a service on one port, vport 0
        // for a port-zero service (persistence across ports), <IPPROTO_IP, client, fwmark>
        // for a service-wide one (every address and port of the service).
        mem::copy(&mut w.tmpl, &w.key);
        w.tmpl.src = and_mask(&w.key.src, &svc.persist_mask);
        w.tmpl.sport = [0; 2];
        if svc.flags & SVC_F_PERSIST_SERVICE != 0 {
            w.tmpl.dst = service_template_dst(svc.id);
            w.tmpl.dport = [0; 2];
            w.tmpl.proto = 0;
        } else if svc.flags & SVC_F_ALL_PORTS != 0 {
            w.tmpl.dport = [0; 2];
        }
        if let Some(t) = KA_PERSIST.get_ptr_mut(&w.tmpl) {
            // SAFETY: a shared LRU value; a racing update by another CPU only changes which
            // valid backend id is read.
            let (id, seen) = unsafe { ((*t).backend, (*t).last_seen_ns) };
            let timeout = u64::from(svc.persist_timeout_s) * 1_000_000_000;
            if now.wrapping_sub(seen) < timeout && usable(id, &mut w.backend) {
                // SAFETY: as above.
                unsafe { (*t).last_seen_ns = now };
                stats::inc(Counter::LbPersistHit);
                if !ops {
                    conn_insert(w, chash, id, tick, tcp_flags);
                }
                return Some((id, true));
            }
        }
    }
    // The active bank: its number, length and first slot in `KA_TABLES`.
    let (bank, len, base) = if svc.bank & 1 == 0 {
        (0, svc.len[0], svc.base[0])
    } else {
        (1, svc.len[1], svc.base[1])
    };
    if len == 0 || len > ka_common::lb::TABLE_SIZE {
        return None;
    }
    if sched_uses_dests(svc.sched) {
        // Verifier: `least_conn` is a constant at each call site, so the ICMP path never
        // walks the candidates. The walk itself runs in `schedule_least`, called by the caller
        // once this function returned: from there it is checked for the few states the
        // caller has, not once per path through this function.
        if !least_conn {
            return None;
        }
        let s = &mut w.walk;
        s.hash = chash;
        s.tick = tick;
        s.tcp_flags = tcp_flags;
        s.bank = bank;
        s.now_ns = now;
        s.ops = u8::from(ops);
        return Some((NEED_LEAST, true));
    }
    let mut id = table_choice(w, hash, base, len);
    if id == NO_ID || !usable(id, &mut w.backend) {
        if w.svc.flags & SVC_F_FALLBACK == 0 {
            return None;
        }
        id = fallback(w, hash, base, len);
        if id == NO_ID {
            return None;
        }
        stats::inc(Counter::LbFallback);
    }
    if !ops {
        conn_insert(w, chash, id, tick, tcp_flags);
    }
    if persist {
        let v = ConnValue {
            backend: id,
            _pad: 0,
            last_seen_ns: now,
        };
        let _ = KA_PERSIST.insert(&w.tmpl, &v, 0);
    }
    stats::inc(Counter::LbNewFlow);
    Some((id, true))
}

/// The table slot a hash scheduler gives the flow in `w` (`len` > 0).
#[inline(always)]
fn hash_slot(w: &Work, hash: u32, len: u32) -> u32 {
    match w.svc.sched {
        SCHED_SRC_HASH => addr_hash(&w.key.src) % len,
        SCHED_DST_HASH => addr_hash(&w.key.dst) % len,
        _ => hash % len,
    }
}

/// `sh-fallback` / `mh-fallback` (IPVS's `ip_vs_sh_get_fallback`): the first usable backend
/// (not down, not overloaded in a service that keeps counts) of the [`FALLBACK_PROBES`] slots
/// probed after the flow's slot of the bank at `base`, copied to `w.backend`; `NO_ID` if none.
// Verifier/LLVM: a BPF-to-BPF call returning a sentinel (see `table_choice`).
#[inline(never)]
fn fallback(w: &mut Work, hash: u32, base: u32, len: u32) -> u32 {
    // Verifier/LLVM: checked again so the `%` has no division-by-zero path here.
    if len == 0 {
        return NO_ID;
    }
    let counted = w.svc.flags & SVC_F_COUNT != 0;
    let slot = hash_slot(w, hash, len);
    let mut k = 1;
    // Bounded: FALLBACK_PROBES iterations.
    while k <= FALLBACK_PROBES {
        if let Some(b) = KA_TABLES.get(base.wrapping_add(fallback_slot(slot, k, len))) {
            let b = *b;
            if !(counted && conn::overloaded(b)) && usable(b, &mut w.backend) {
                return b;
            }
        }
        k += 1;
    }
    NO_ID
}

/// The backend of a table scheduler (Maglev over the 5-tuple, the source or the destination;
/// the round-robin cursor) for the flow in `w`, from the bank of `len` slots at `base` in
/// `KA_TABLES`, or `NO_ID`.
/// In a service that keeps counts an overloaded backend (`uthreshold`) is passed over as IPVS
/// does: the round-robin cursor moves on (at most `MAX_DESTS` slots), a hash scheduler has no
/// backend.
// Verifier/LLVM: a BPF-to-BPF call (stack frame of its own) returning a sentinel, not an
// `Option` (whose `None` would carry an undefined payload).
#[inline(never)]
fn table_choice(w: &mut Work, hash: u32, base: u32, len: u32) -> u32 {
    table_pick(w, hash, base, len).unwrap_or(NO_ID)
}

#[inline(always)]
fn table_pick(w: &mut Work, hash: u32, base: u32, len: u32) -> Option<u32> {
    let (svc_id, sched) = (w.svc.id, w.svc.sched);
    let counted = w.svc.flags & SVC_F_COUNT != 0;
    // Verifier/LLVM: checked again here (the caller did) so the `%` below has no
    // division-by-zero panic path in this function of its own.
    if len == 0 {
        return None;
    }
    let slot = match sched {
        SCHED_MAGLEV | SCHED_SRC_HASH | SCHED_DST_HASH => hash_slot(w, hash, len),
        SCHED_ROUND_ROBIN => {
            let c = KA_RR.get_ptr_mut(svc_id)?;
            // SAFETY: per-CPU value of this CPU.
            let start = unsafe { *c };
            if counted {
                let id = sched::round_robin(w, base, start, len);
                // SAFETY: as above. The cursor moves past the slots tried.
                unsafe { *c = start.wrapping_add(w.walk.rr_tried).wrapping_add(1) % len };
                return (id != NO_ID).then_some(id);
            }
            let n = if start >= len { 0 } else { start };
            // SAFETY: as above.
            unsafe { *c = if n + 1 >= len { 0 } else { n + 1 } };
            n
        }
        _ => return None,
    };
    let id = *KA_TABLES.get(base.wrapping_add(slot))?;
    if counted && conn::overloaded(id) {
        stats::inc(Counter::LbOverloaded);
        return None;
    }
    Some(id)
}

/// [`choose`]'s answer for a new flow of a least-connection service: call
/// [`schedule_least`].
pub const NEED_LEAST: u32 = u32::MAX - 1;

/// Schedules the new flow [`choose`] answered [`NEED_LEAST`] for (its hash, clock, flags and
/// bank left in `w.walk`) with the service's least-connection scheduler, and records it as
/// `choose` records a new flow; the backend, or `NO_ID` when none is available.
// Verifier/LLVM: a BPF-to-BPF call returning a sentinel (see `choose`).
#[inline(never)]
pub fn schedule_least(w: &mut Work) -> u32 {
    let (hash, tick, tcp_flags, bank, now) = (w.walk.hash, w.walk.tick, w.walk.tcp_flags, w.walk.bank, w.walk.now_ns);
    let id = sched::least(w, bank, tick);
    if id == NO_ID || !usable(id, &mut w.backend) {
        return NO_ID;
    }
    keep_port(w);
    if w.walk.ops == 0 {
        conn_insert(w, hash, id, tick, tcp_flags);
    }
    if w.svc.flags & SVC_F_PERSIST != 0 {
        let v = ConnValue { backend: id, _pad: 0, last_seen_ns: now };
        let _ = KA_PERSIST.insert(&w.tmpl, &v, 0);
    }
    stats::inc(Counter::LbNewFlow);
    id
}

/// Records the reverse translation of a new NAT flow: replies from the backend to the client
/// get the VIP and virtual port back.
#[inline(always)]
pub fn record_nat(w: &mut Work) {
    if w.backend.method != METHOD_NAT {
        return;
    }
    w.tmpl = FlowKey {
        src: w.backend.addr,
        dst: w.key.src,
        sport: w.backend.port,
        dport: w.key.sport,
        proto: w.key.proto,
        family: w.key.family,
        _pad: [0; 2],
    };
    let v = NatValue {
        vip: w.key.dst,
        vport: w.key.dport,
        _pad: [0; 2],
        service: w.svc.id,
    };
    let _ = KA_NAT.insert(&w.tmpl, &v, 0);
}

/// The NAT reverse entry of a reply, if any.
#[inline(always)]
pub fn nat_reverse(key: &FlowKey) -> Option<NatValue> {
    KA_NAT.get_ptr(key).map(|p| unsafe { *p })
}
