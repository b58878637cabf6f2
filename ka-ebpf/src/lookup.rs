//! Lookups of the load balancer: the flow key of a packet, its service, and the backend it goes
//! to (connection table, then persistence template, then the service's scheduler). The kernel
//! only reads tables that userspace computed; it writes the connection, persistence and NAT
//! tables.

use core::{mem::size_of, ptr::read_volatile};

use aya_ebpf::{
    helpers::{bpf_jiffies64, bpf_ktime_get_ns},
    programs::XdpContext,
};
use ka_common::{
    lb::{
        addr_hash, and_mask, conn_check, conn_set, fallback_slot, flow_hash, flow_hash4,
        service_template_dst, table_index, Backend, ConnValue, FlowKey, FlowKey4, NatValue,
        ServiceKey, ServiceKey4, ServiceValue, BACKEND_F_DOWN, CONN_WAYS, FALLBACK_PROBES,
        FAMILY_V4, FAMILY_V6, METHOD_NAT, SCHED_DST_HASH, SCHED_MAGLEV, SCHED_ROUND_ROBIN,
        SCHED_SRC_HASH, SVC_F_ALL_PORTS, SVC_F_FALLBACK, SVC_F_OPS, SVC_F_PERSIST,
        SVC_F_PERSIST_SERVICE,
    },
    stats::Counter,
    wire::{Ipv4Hdr, Ipv6Hdr, IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_SYN},
};

use crate::{
    maps::{
        Work, KA_BACKENDS, KA_CONNS4, KA_CONNS6, KA_NAT, KA_PERSIST, KA_RR, KA_SERVICES4,
        KA_SERVICES6, KA_TABLES,
    },
    mem,
    parse::L3,
    ptr::ptr_at,
    stats,
};

/// An IPv4 address in the 16-byte form of the maps.
#[inline(always)]
pub fn v4_16(a: [u8; 4]) -> [u8; 16] {
    [a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// Fills `w.key` with the 5-tuple of the stashed TCP/UDP packet; false if it has no IP header.
#[inline(always)]
pub fn flow_key(ctx: &XdpContext, w: &mut Work) -> bool {
    let pkt = &w.pkt;
    let k = &mut w.key;
    match pkt.l3 {
        L3::Ipv4 => {
            let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, pkt.l3_off) else {
                return false;
            };
            // SAFETY: bounds-checked by ptr_at; FlowKey is 4-aligned with src at 0, dst at 16.
            let (src, dst) = unsafe { ((*ip).src, (*ip).dst) };
            // SAFETY: as above.
            unsafe {
                mem::store_v4(&mut k.src, src);
                mem::store_v4(&mut k.dst, dst);
            }
            k.family = FAMILY_V4;
            let k4 = &mut w.key4;
            k4.src = src;
            k4.dst = dst;
            k4.sport = pkt.src_port.to_be_bytes();
            k4.dport = pkt.dst_port.to_be_bytes();
            k4.proto = pkt.ip_proto;
            k4._pad = [0; 3];
        }
        L3::Ipv6 => {
            let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, pkt.l3_off) else {
                return false;
            };
            // SAFETY: as above; the packet side may be unaligned (see mem::load16).
            unsafe {
                mem::load16(&mut k.src, &(*ip).src);
                mem::load16(&mut k.dst, &(*ip).dst);
            }
            k.family = FAMILY_V6;
        }
        L3::Other => return false,
    }
    k.sport = pkt.src_port.to_be_bytes();
    k.dport = pkt.dst_port.to_be_bytes();
    k.proto = pkt.ip_proto;
    k._pad = [0; 2];
    true
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
/// exact one).
#[inline(always)]
pub fn service(w: &Work, any_port: bool) -> Option<*const ServiceValue> {
    if w.key.family == FAMILY_V4 {
        let mut k = ServiceKey4 {
            addr: w.key4.dst,
            port: w.key4.dport,
            proto: w.key4.proto,
            _pad: 0,
        };
        if let Some(v) = KA_SERVICES4.get_ptr(&k) {
            return Some(v);
        }
        if !any_port {
            return None;
        }
        k.port = [0; 2];
        KA_SERVICES4.get_ptr(&k)
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

/// Whether the `N` words at `a` and `b` are equal. Volatile loads: LLVM would otherwise turn
/// the loop into a `bcmp` call (aya-ebpf's compares a byte per iteration).
#[inline(always)]
fn words_eq<const N: usize>(a: *const u32, b: *const u32) -> bool {
    let mut i = 0;
    let mut diff = 0u32;
    while i < N {
        // SAFETY: the callers pass pointers to N-word, 4-aligned keys.
        diff |= unsafe { read_volatile(a.add(i)) ^ read_volatile(b.add(i)) };
        i += 1;
    }
    diff == 0
}

/// Lookup and insertion of one family's set-associative connection table
/// (`ka_common::lb::CONN4_MAP`): `$get(key, hash, now)` returns the backend of a live way
/// holding `key` and refreshes its stamp; `$put(key, hash, backend, now)` records the flow in
/// its own way, a free one, or the least recently seen one of the set.
macro_rules! conn_table {
    ($get:ident, $put:ident, $map:ident, $key:ty) => {
        #[inline(always)]
        fn $get(key: &$key, hash: u32, now: u32) -> Option<u32> {
            const N: usize = size_of::<$key>() / 4;
            let set = $map.get_ptr_mut(conn_set(hash))?;
            let mut i = 0;
            while i < CONN_WAYS {
                // SAFETY: a map value of CONN_WAYS ways, i < CONN_WAYS. Other CPUs may write
                // it concurrently: a torn way fails the check and reads as a miss.
                let way = unsafe { &mut (*set).ways[i] };
                if way.stamp != 0
                    && words_eq::<N>(&way.key as *const $key as *const u32, key as *const $key as *const u32)
                    && way.check == conn_check(hash, way.backend)
                {
                    if way.stamp != now {
                        way.stamp = now;
                    }
                    return Some(way.backend);
                }
                i += 1;
            }
            None
        }

        #[inline(always)]
        fn $put(key: &$key, hash: u32, backend: u32, now: u32) {
            const N: usize = size_of::<$key>() / 4;
            let Some(set) = $map.get_ptr_mut(conn_set(hash)) else {
                return;
            };
            let (mut victim, mut oldest) = (0usize, 0u32);
            let mut i = 0;
            while i < CONN_WAYS {
                // SAFETY: as in the lookup.
                let way = unsafe { &(*set).ways[i] };
                if way.stamp == 0
                    || words_eq::<N>(&way.key as *const $key as *const u32, key as *const $key as *const u32)
                {
                    victim = i;
                    break;
                }
                let age = now.wrapping_sub(way.stamp);
                if age >= oldest {
                    oldest = age;
                    victim = i;
                }
                i += 1;
            }
            // SAFETY: as in the lookup; the mask keeps the index provably in range.
            let way = unsafe { &mut (*set).ways[victim & (CONN_WAYS - 1)] };
            mem::copy(&mut way.key, key);
            way.backend = backend;
            way.check = conn_check(hash, backend);
            way.stamp = now;
        }
    };
}

conn_table!(conn4_get, conn4_put, KA_CONNS4, FlowKey4);
conn_table!(conn6_get, conn6_put, KA_CONNS6, FlowKey);

/// The connection-table clock: low 32 bits of `bpf_jiffies64` (inlined by the verifier), never
/// 0 (a free way).
#[inline(always)]
pub fn conn_now() -> u32 {
    // SAFETY: plain helper call.
    (unsafe { bpf_jiffies64() } as u32) | 1
}

/// The backend recorded for the flow in its family's connection table.
#[inline(always)]
fn conn(w: &Work, hash: u32, now: u32) -> Option<u32> {
    if w.key.family == FAMILY_V4 {
        conn4_get(&w.key4, hash, now)
    } else {
        conn6_get(&w.key, hash, now)
    }
}

/// Records the flow's backend in its family's connection table.
#[inline(always)]
pub fn conn_insert(w: &Work, hash: u32, backend: u32, now: u32) {
    if w.key.family == FAMILY_V4 {
        conn4_put(&w.key4, hash, backend, now);
    } else {
        conn6_put(&w.key, hash, backend, now);
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
/// the flow is new; `None`: no backend available.
// Verifier/LLVM: a BPF-to-BPF call (stack frame of its own).
#[inline(never)]
pub fn choose(w: &mut Work) -> Option<(u32, bool)> {
    let picked = pick(w)?;
    if w.backend.port == [0; 2] {
        w.backend.port = w.key.dport;
    }
    Some(picked)
}

/// The connection table first (not for a TCP SYN, which opens a new connection, nor for a
/// datagram of a one-packet service), then the client's persistence template, then the
/// scheduler.
#[inline(always)]
fn pick(w: &mut Work) -> Option<(u32, bool)> {
    let svc = &w.svc;
    let persist = svc.flags & SVC_F_PERSIST != 0;
    // `ops`: IPVS schedules each UDP datagram of a one-packet service on its own
    // (IP_VS_CONN_F_ONE_PACKET, UDP only): no connection entry is looked up or recorded.
    let ops = svc.flags & SVC_F_OPS != 0 && w.key.proto == IPPROTO_UDP;
    // A SYN without ACK opens a connection: schedule it afresh, as Katran does (the entry a
    // reused 5-tuple left behind would only pin the new connection to the old server, and the
    // lookup is a hash computation and a bucket walk saved on every new flow). A retransmitted
    // SYN gets the same answer from the scheduler unless the backend set changed in between.
    let syn = w.key.proto == IPPROTO_TCP && w.pkt.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    let hash = hash_of(w);
    let tick = conn_now();
    if let Some(id) = if syn || ops { None } else { conn(w, hash, tick) } {
        if usable(id, &mut w.backend) {
            stats::inc(Counter::LbConnHit);
            return Some((id, false));
        }
        stats::inc(Counter::LbReschedule);
    }
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
                    conn_insert(w, hash, id, tick);
                }
                return Some((id, true));
            }
        }
    }
    let (bank, len) = if svc.bank & 1 == 0 {
        (0, svc.len[0])
    } else {
        (1, svc.len[1])
    };
    if len == 0 || len > ka_common::lb::TABLE_SIZE {
        return None;
    }
    let slot = match svc.sched {
        SCHED_MAGLEV => hash % len,
        SCHED_SRC_HASH => addr_hash(&w.key.src) % len,
        SCHED_DST_HASH => addr_hash(&w.key.dst) % len,
        SCHED_ROUND_ROBIN => {
            let c = KA_RR.get_ptr_mut(svc.id)?;
            // SAFETY: per-CPU value of this CPU.
            let n = unsafe { *c };
            let n = if n >= len { 0 } else { n };
            unsafe { *c = if n + 1 >= len { 0 } else { n + 1 } };
            n
        }
        _ => return None,
    };
    let mut id = *KA_TABLES.get(table_index(svc.id, bank, slot))?;
    if !usable(id, &mut w.backend) {
        if svc.flags & SVC_F_FALLBACK == 0 {
            return None;
        }
        id = fallback(svc.id, bank, slot, len, &mut w.backend)?;
        stats::inc(Counter::LbFallback);
    }
    if !ops {
        conn_insert(w, hash, id, tick);
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

/// `sh-fallback` / `mh-fallback` (IPVS's `ip_vs_sh_get_fallback`): the first usable backend
/// of the [`FALLBACK_PROBES`] slots probed after `slot` of service `id`'s table, copied to
/// `out`.
#[inline(always)]
fn fallback(id: u32, bank: u32, slot: u32, len: u32, out: &mut Backend) -> Option<u32> {
    let mut k = 1;
    // Bounded: FALLBACK_PROBES iterations.
    while k <= FALLBACK_PROBES {
        if let Some(b) = KA_TABLES.get(table_index(id, bank, fallback_slot(slot, k, len))) {
            let b = *b;
            if usable(b, out) {
                return Some(b);
            }
        }
        k += 1;
    }
    None
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
