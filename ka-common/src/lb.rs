//! Load-balancer map layout shared by `ka_xdp` and the userspace map writer: services, backends,
//! double-buffered scheduling tables, connection and NAT tables, next hops, mastership flags,
//! per-service and per-backend counters, and the tunnel/decap settings.
//!
//! Addresses are stored in 16 bytes: an IPv6 address as is, an IPv4 address in the first four
//! bytes with the other twelve zero; a `family` field ([`FAMILY_V4`] / [`FAMILY_V6`]) says which.
//! Ports are in network byte order (`[u8; 2]`).
//!
//! # Scheduling tables
//!
//! [`TABLES_MAP`] is one pool of [`TABLE_POOL_SLOTS`] slots. Each service that schedules from a
//! table owns a region of it: two banks of `cap` slots, a power of two ([`table_capacity`]),
//! at `base[0]` and `base[1]` of its [`ServiceValue`]; userspace places the regions (a buddy
//! allocator: no region ever straddles another). A Maglev service's ring is the prime just
//! below `cap` ([`ring_size`]), chosen from the number of its real servers, so that 10,000
//! small services fit where 64 rings of 65,537 slots used to.
//!
//! # Atomic service updates
//!
//! Userspace rewrites only the slots that differ in the *inactive* bank, then replaces the
//! service's [`ServiceValue`] (a hash-map element, so the replacement is atomic for readers)
//! with `bank` flipped and `len` updated (and, when the service moves to a region of another
//! size, `base` and `cap` too; the region it leaves is reused only by a later update). A
//! packet reads the service value once, so it sees either the whole old table or the whole new
//! one.

use bytemuck::{Pod, Zeroable};

/// The largest Maglev ring: a prime, so every `skip` visits every slot (Maglev §3.4), and the
/// largest below 2^16 so a ring fits a bank of [`TABLE_SIZE`] slots.
pub const MAGLEV_RING_SIZE: u32 = 65_521;
/// Slots of the largest bank (a power of two): the longest table a service can have (Maglev
/// ring, round-robin schedule).
pub const TABLE_SIZE: u32 = 65_536;
/// Banks per service (double buffering).
pub const TABLE_BANKS: u32 = 2;
/// Slots of [`TABLES_MAP`] (a power of two: 64 services of the largest rings, or 16,384 of the
/// smallest; 32 MiB).
pub const TABLE_POOL_SLOTS: u32 = 1 << 23;
/// The Maglev ring sizes: for each bank capacity `2^k` from 256 to 65,536, the largest prime
/// below it.
pub const RING_SIZES: [u32; 9] = [251, 509, 1021, 2039, 4093, 8191, 16_381, 32_749, 65_521];
/// Slots per real server a Maglev ring has at least (Maglev §5.3: rings of 100 × N slots keep
/// every server within about 1 % of its share).
pub const RING_SLOTS_PER_SERVER: u32 = 100;

/// The bank capacity of a table service with `servers` real servers (a power of two from 256
/// to [`TABLE_SIZE`]): the smallest whose ring ([`ring_size`]) has at least
/// [`RING_SLOTS_PER_SERVER`] slots per server.
pub const fn table_capacity(servers: u32) -> u32 {
    let want = servers.saturating_mul(RING_SLOTS_PER_SERVER);
    let mut i = 0;
    while i < RING_SIZES.len() {
        if RING_SIZES[i] >= want {
            return 256 << i;
        }
        i += 1;
    }
    TABLE_SIZE
}

/// The Maglev ring of a bank of `cap` slots: the largest prime below it ([`RING_SIZES`]).
pub const fn ring_size(cap: u32) -> u32 {
    let mut i = 0;
    while i < RING_SIZES.len() {
        if (256 << i) >= cap {
            return RING_SIZES[i];
        }
        i += 1;
    }
    MAGLEV_RING_SIZE
}

/// Most services (a `virtual_server`, with all the addresses and ports of its group): the
/// index of their round-robin cursors, candidate lists and counters.
pub const MAX_SERVICES: u32 = 16_384;
/// Most service keys of each family ([`SERVICES4_MAP`], [`SERVICES6_MAP`]): every (VIP, port,
/// protocol) a service answers on, each address of a `virtual_server_group` range one key.
/// Several keys carry the same [`ServiceValue`] (one id: one table, one persistence scope).
pub const MAX_SERVICE_KEYS: u32 = 16_384;
/// Most backends (a real server of a service; the same address in two services is two
/// backends).
pub const MAX_BACKENDS: u32 = 32_768;
/// Sets of each family's connection table ([`CONN4_MAP`], [`CONN6_MAP`]): a power of two, so
/// the set of a flow is its hash's low bits.
pub const CONN_SETS: u32 = 65_536;
/// Ways of a connection-table set: a flow lives in one of the [`CONN_WAYS`] slots of the set
/// its hash selects; a new flow takes a free way, else the least recently seen one.
pub const CONN_WAYS: usize = 4;
/// Flows each family's connection table holds.
pub const CONN_TABLE_SIZE: u32 = CONN_SETS * CONN_WAYS as u32;
/// `BPF_F_NO_COMMON_LRU` (uapi `linux/bpf.h`): an LRU hash map with one LRU list per CPU.
pub const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;
/// Shared NAT reverse-table and persistence-table entries.
pub const NAT_TABLE_SIZE: u32 = 65_536;
/// Persistence templates (client affinity).
pub const PERSIST_TABLE_SIZE: u32 = 65_536;
/// Next-hop (neighbour) entries kept by userspace.
pub const NEIGH_TABLE_SIZE: u32 = 1024;
/// Mastership slots (one per VRRP instance owning VIPs).
pub const MAX_MASTER_SLOTS: u32 = 256;
/// Local VIPs the decap program accepts.
pub const LOCAL_VIPS_SIZE: u32 = 1024;

/// IPv4 services, `HashMap<ServiceKey4, ServiceValue>` (an 8-byte key: the hot path hashes
/// less than with the 16-byte address form).
pub const SERVICES4_MAP: &str = "KA_SERVICES4";
/// The IPv4 service slots, `Array<ServiceSlot4>` of [`SVC_SLOTS4`]: a direct-mapped copy of
/// [`SERVICES4_MAP`] (each key in slot [`svc_slot4`] of its own, unless another key holds it),
/// so the datapath finds a service with one array lookup and a two-word compare, and hashes
/// the key into the kernel's hash map only when the slot holds another key. Written by
/// userspace only (per process, never pinned: the first apply fills it).
pub const SVC_SLOTS4_MAP: &str = "KA_SVC_SLOTS4";
/// Slots of [`SVC_SLOTS4_MAP`] (a power of two): a quarter of [`MAX_SERVICE_KEYS`], 256 KiB.
pub const SVC_SLOTS4: u32 = 4096;
/// IPv6 services, `HashMap<ServiceKey, ServiceValue>`.
pub const SERVICES6_MAP: &str = "KA_SERVICES6";
/// Backends, `Array<Backend>` of [`MAX_BACKENDS`].
pub const BACKENDS_MAP: &str = "KA_BACKENDS";
/// Scheduling tables, `Array<u32>` (backend ids) of [`TABLE_POOL_SLOTS`]: the regions of the
/// services (see the module notes).
pub const TABLES_MAP: &str = "KA_TABLES";
/// Round-robin cursors, `PerCpuArray<u32>` of [`MAX_SERVICES`].
pub const RR_MAP: &str = "KA_RR";
/// IPv4 connection table, `Array<ConnSet4>` of [`CONN_SETS`]: a set-associative flow table
/// shared by every CPU (a flow whose packets change CPU keeps its backend), with
/// least-recently-seen replacement inside a set. The kernel reads and writes it with plain
/// loads and stores, no helper call and no lock, so a new flow costs what a lookup does (an
/// LRU hash insert costs several times the whole rest of the path). Entries carry a check word
/// so a way torn by two CPUs writing it at once reads as a miss, never as another flow's
/// backend.
pub const CONN4_MAP: &str = "KA_CONNS4";
/// IPv6 connection table, `Array<ConnSet6>` of [`CONN_SETS`], as [`CONN4_MAP`].
pub const CONN6_MAP: &str = "KA_CONNS6";
/// Persistence templates, `LruHashMap<FlowKey, ConnValue>` (client masked, ports 0).
pub const PERSIST_MAP: &str = "KA_PERSIST";
/// NAT reverse table, `LruHashMap<FlowKey, NatValue>` keyed by the reply's 5-tuple.
pub const NAT_MAP: &str = "KA_NAT";
/// Next hops kept by userspace, `HashMap<NeighKey, NeighValue>` (fallback of `bpf_fib_lookup`).
pub const NEIGH_MAP: &str = "KA_NEIGH";
/// Mastership flags, `Array<u32>` of [`MAX_MASTER_SLOTS`]: non-zero = this node is MASTER.
pub const MASTER_MAP: &str = "KA_MASTER";
/// Global settings, `Array<Globals>` of 1.
pub const GLOBALS_MAP: &str = "KA_GLOBALS";
/// The unicast MACs frames to a service may be addressed to (the XDP interfaces' and their
/// VRRP virtual MACs): key the MAC in bytes 0..6 (bytes 6..8 zero), value unused (1).
pub const LOCAL_MACS_MAP: &str = "KA_LOCAL_MACS";
/// Entries of [`LOCAL_MACS_MAP`].
pub const LOCAL_MACS_MAX: u32 = 256;
/// The local MAC slots, `Array<u64>` of [`LOCAL_MAC_SLOTS`]: a direct-mapped copy of
/// [`LOCAL_MACS_MAP`] (each MAC's 8-byte key, as a native-endian `u64`, in slot
/// [`local_mac_slot`] of its own unless another MAC holds it; 0: free), so the datapath checks
/// a frame's destination with one array lookup and one compare, and hashes it into the
/// kernel's hash map only when the slot holds another MAC. Written by userspace only (per
/// process, never pinned: each start fills it, and until then the hash map answers).
pub const LOCAL_MAC_SLOTS_MAP: &str = "KA_LOCAL_MAC_SLOTS";
/// Slots of [`LOCAL_MAC_SLOTS_MAP`] (a power of two).
pub const LOCAL_MAC_SLOTS: u32 = 256;

/// The slot of [`LOCAL_MAC_SLOTS_MAP`] for a MAC whose bytes 2..6 are `low` (as loaded,
/// native-endian): an interface's MACs differ in their low bytes, a VRRP virtual MAC in its
/// last two (family and VRID).
#[inline(always)]
pub const fn local_mac_slot(low: u32) -> u32 {
    low.wrapping_mul(0x9e37_79b1) >> 24 & (LOCAL_MAC_SLOTS - 1)
}
/// Per-service packets/bytes, `PerCpuArray<PktBytes>` of [`MAX_SERVICES`].
pub const SERVICE_STATS_MAP: &str = "KA_SVC_STATS";
/// Per-backend packets/bytes, `PerCpuArray<PktBytes>` of [`MAX_BACKENDS`].
pub const BACKEND_STATS_MAP: &str = "KA_BACKEND_STATS";
/// A Bloom-style filter of the VIP addresses, `Array<u64>` of [`VIP_FILTER_WORDS`]: bit
/// [`vip_filter_bit`] of every address some service key has is set. A packet whose destination
/// bit is clear is no VIP's, and passes (`pass_not_vip`) before any hash lookup, the
/// non-VIP cost; a set bit may be another address's (about 4 % of addresses with 10,000 VIPs),
/// which the service lookup then tells. While a NAT service exists every bit is set (its
/// replies, from real servers to clients, go to no VIP). Written by userspace only, before a
/// program that uses it is attached; the kernel reads it whatever the flags say (no services:
/// all clear, so every TCP/UDP packet passes as `pass_not_vip`).
pub const VIP_FILTER_MAP: &str = "KA_VIP_FILTER";
/// log2 of the bits of [`VIP_FILTER_MAP`].
pub const VIP_FILTER_BITS_LOG2: u32 = 18;
/// Words (u64) of [`VIP_FILTER_MAP`]: 32 KiB.
pub const VIP_FILTER_WORDS: u32 = 1 << (VIP_FILTER_BITS_LOG2 - 6);
/// VIPs local to a real server, `HashMap<AddrKey, u32>` (the decap program's).
pub const LOCAL_VIPS_MAP: &str = "KA_LOCAL_VIPS";
/// The decap program run on TUN real servers.
pub const DECAP_PROGRAM: &str = "ka_decap";
/// Cached next hops of backends, `PerCpuArray<NhCache>` of [`MAX_BACKENDS`], indexed by
/// backend id. Filled by the kernel from `bpf_fib_lookup` (or the neighbour map) on a miss or
/// when older than [`NH_CACHE_TTL_JIFFIES`]; userspace zeroes a slot when its backend id is
/// (re)allocated or the neighbour map changes.
pub const NH_CACHE_MAP: &str = "KA_NH_CACHE";
/// Lifetime of a cached next hop, in jiffies (`bpf_jiffies64`, which the verifier inlines into
/// one load where a clock helper is a call on every packet): a route or neighbour change is
/// picked up within 1 s on a `CONFIG_HZ=250` kernel (Debian's), 0.25 s at HZ 1000, 2.5 s at
/// HZ 100. Userspace also empties the slots whenever the neighbour map changes.
pub const NH_CACHE_TTL_JIFFIES: u64 = 250;
/// A trivial program (swap MACs, `XDP_TX`): the floor the benchmarks report paths against.
pub const XDP_TX_PROGRAM: &str = "ka_xdp_tx";

/// A benchmark program (`ka_xdp` with a new IPv4 flow on every run of a repeated
/// BPF_PROG_TEST_RUN). Never attached by ka.
pub const BENCH_NEW_FLOW_PROGRAM: &str = "ka_xdp_bench_new_flow";

/// `family` of an IPv4 entry.
pub const FAMILY_V4: u8 = 4;
/// `family` of an IPv6 entry.
pub const FAMILY_V6: u8 = 6;

/// Scheduler: Maglev over the 5-tuple (`mh`).
pub const SCHED_MAGLEV: u8 = 0;
/// Scheduler: Maglev over the source address (`sh`).
pub const SCHED_SRC_HASH: u8 = 1;
/// Scheduler: Maglev over the destination address (`dh`).
pub const SCHED_DST_HASH: u8 = 2;
/// Scheduler: per-CPU cursor over a weighted round-robin schedule (`rr`, `wrr`).
pub const SCHED_ROUND_ROBIN: u8 = 3;
/// Scheduler: least connections (`lc`), over the service's [`crate::sched::DestList`].
pub const SCHED_LC: u8 = 4;
/// Scheduler: weighted least connections (`wlc`).
pub const SCHED_WLC: u8 = 5;
/// Scheduler: shortest expected delay (`sed`).
pub const SCHED_SED: u8 = 6;
/// Scheduler: never queue (`nq`).
pub const SCHED_NQ: u8 = 7;
/// Scheduler: weighted fail-over (`fo`).
pub const SCHED_FO: u8 = 8;
/// Scheduler: overflow connection (`ovf`).
pub const SCHED_OVF: u8 = 9;
/// Scheduler: locality-based least connections (`lblc`).
pub const SCHED_LBLC: u8 = 10;
/// Scheduler: locality-based least connections with replication (`lblcr`).
pub const SCHED_LBLCR: u8 = 11;
/// Scheduler: power of two choices (`twos`).
pub const SCHED_TWOS: u8 = 12;

/// Whether `sched` walks a [`crate::sched::DestList`] (the least-connection family) rather
/// than a table of [`TABLES_MAP`].
#[inline(always)]
pub const fn sched_uses_dests(sched: u8) -> bool {
    sched >= SCHED_LC && sched <= SCHED_TWOS
}

/// Service flag: client affinity (`persistence_timeout`).
pub const SVC_F_PERSIST: u8 = 1 << 0;
/// Service flag: one-packet scheduling (`ops`): a UDP datagram is scheduled on its own, never
/// recorded in nor looked up in the connection table (TCP is unaffected).
pub const SVC_F_OPS: u8 = 1 << 1;
/// Service flag: `sh-fallback` / `mh-fallback`: when the table's backend for a flow cannot be
/// used, the next [`FALLBACK_PROBES`] slots of the flow's probe sequence are tried; without
/// it the flow gets no backend (IPVS refuses it).
pub const SVC_F_FALLBACK: u8 = 1 << 2;
/// Service flag: the persistence template is the service's, not the key's: a client keeps its
/// real server across every address and port of the service (IPVS's fwmark template,
/// `<IPPROTO_IP, client, fwmark>`): a `virtual_server_group` under `nftables_ipvs`.
pub const SVC_F_PERSIST_SERVICE: u8 = 1 << 3;
/// Service flag, set on a port-0 key only: all ports of the address; the persistence template
/// has port 0, so a client keeps its real server across ports (IPVS's port-zero template
/// `<protocol, client, 0, vip, 0>`).
pub const SVC_F_ALL_PORTS: u8 = 1 << 4;

/// Service flag: keep connection counts for its backends ([`crate::sched`]): set for the
/// least-connection schedulers and when a real server has a `uthreshold`.
pub const SVC_F_COUNT: u8 = 1 << 5;

/// Slots tried after the first one by a service with [`SVC_F_FALLBACK`].
pub const FALLBACK_PROBES: u32 = 8;

/// No mastership gating: the service is always served (`ServiceValue::master_slot`).
pub const NO_MASTER_SLOT: u32 = u32::MAX;

/// Backend forwarding: direct routing (rewrite MACs).
pub const METHOD_DR: u8 = 1;
/// Backend forwarding: IPIP / IP6IP6 tunnel.
pub const METHOD_TUN: u8 = 2;
/// Backend forwarding: destination NAT with reverse translation of replies.
pub const METHOD_NAT: u8 = 3;

/// Backend flag: health check failed; its connections are rescheduled.
pub const BACKEND_F_DOWN: u32 = 1 << 0;

/// Global flag: the load balancer is configured (look up services).
pub const G_LB: u32 = 1 << 0;
/// Global flag: validate VRRP adverts in XDP (see [`crate::vrrp_fast`]).
pub const G_VRRP_FASTPATH: u32 = 1 << 1;
/// Global flag: drop adverts with no instance on the interface (unknown VRID, too short to
/// read one); otherwise they pass, counted.
pub const G_VRRP_DROP_UNKNOWN: u32 = 1 << 2;
/// Global flag: NAT backends exist (look up replies in the NAT table).
pub const G_NAT: u32 = 1 << 3;
/// Global flag: port-0 (all-port) service keys exist: a packet whose (VIP, port, protocol) has
/// no key is looked up again with port 0 (no second lookup without such a service).
pub const G_ANY_PORT: u32 = 1 << 4;
/// Global flag: [`LOCAL_MACS_MAP`] holds the MACs of the XDP interfaces: a packet to a service
/// in a frame addressed to another MAC passes, unforwarded (`pass_not_our_mac`).
pub const G_DST_MAC: u32 = 1 << 5;
/// Global flag: [`VIP_FILTER_MAP`] holds every VIP of the service maps (set by the map writer
/// once it wrote the filter). The datapath no longer reads it (the filter itself answers for
/// NAT and for no services); kept set for a program of an earlier ka still running on the
/// maps during an upgrade.
pub const G_VIP_FILTER: u32 = 1 << 6;
/// Global flag: connection sync is on and this node is MASTER of its VRRP instance: new flows
/// are pushed to the sync ring ([`crate::sync`]). A high bit, clear of the flags above.
pub const G_SYNC_MASTER: u32 = 1 << 8;

/// Key of [`SERVICES4_MAP`]: (IPv4 VIP, port, protocol).
// 4-aligned so the kernel side fills it with two word stores.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct ServiceKey4 {
    /// Virtual address.
    pub addr: [u8; 4],
    /// Virtual port, network order.
    pub port: [u8; 2],
    /// IP protocol (6 or 17).
    pub proto: u8,
    /// Padding.
    pub _pad: u8,
}

/// Key of [`CONN4_MAP`]: an IPv4 5-tuple as seen on the wire.
// 4-aligned so the kernel side fills it a word at a time.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FlowKey4 {
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Source port, network order.
    pub sport: [u8; 2],
    /// Destination port, network order.
    pub dport: [u8; 2],
    /// IP protocol.
    pub proto: u8,
    /// Padding.
    pub _pad: [u8; 3],
}

/// Key of [`SERVICES6_MAP`] (and the userspace identity of every service): (VIP, port,
/// protocol).
// 4-aligned so the kernel side fills it a word at a time.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct ServiceKey {
    /// Virtual address (IPv4 in the first four bytes).
    pub addr: [u8; 16],
    /// Virtual port, network order.
    pub port: [u8; 2],
    /// IP protocol (6 or 17).
    pub proto: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
}

impl ServiceKey {
    /// The key of [`SERVICES4_MAP`] for an IPv4 service; `None` for IPv6.
    pub fn v4(&self) -> Option<ServiceKey4> {
        (self.family == FAMILY_V4).then_some(ServiceKey4 {
            addr: v4_of_16(&self.addr),
            port: self.port,
            proto: self.proto,
            _pad: 0,
        })
    }
}

/// One slot of [`SVC_SLOTS4_MAP`]: a service key and its value, one 64-byte cache line. A free
/// slot is all zero (protocol 0: no packet's key).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ServiceSlot4 {
    /// The key the slot holds.
    pub key: ServiceKey4,
    /// Its value, as in [`SERVICES4_MAP`].
    pub value: ServiceValue,
}

/// The slot of [`SVC_SLOTS4_MAP`] for `key`, from its two words as they lie in memory (the
/// kernel reads them so): a multiplicative hash's top bits.
#[inline(always)]
pub fn svc_slot4_words(w0: u32, w1: u32) -> u32 {
    (w0 ^ w1.rotate_left(16)).wrapping_mul(0x9e37_79b1) >> (32 - SVC_SLOTS4.trailing_zeros())
}

/// [`svc_slot4_words`] of a key.
#[inline(always)]
pub fn svc_slot4(key: &ServiceKey4) -> u32 {
    let [w0, w1]: [u32; 2] = bytemuck::cast(*key);
    svc_slot4_words(w0, w1)
}

/// Value of [`SERVICES4_MAP`] and [`SERVICES6_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ServiceValue {
    /// Service id: index of its cursor, candidate lists and counters (< [`MAX_SERVICES`]).
    pub id: u32,
    /// Active bank (0 or 1).
    pub bank: u32,
    /// Slots in use in each bank (0: no backend available; at most `cap`).
    pub len: [u32; 2],
    /// Index in [`TABLES_MAP`] of slot 0 of each bank.
    pub base: [u32; 2],
    /// Slots of each bank (a power of two, [`table_capacity`]; 0: no table, a
    /// least-connection service).
    pub cap: u32,
    /// Index in [`MASTER_MAP`] of the VRRP instance owning the VIP, or [`NO_MASTER_SLOT`].
    pub master_slot: u32,
    /// Persistence timeout in seconds (with [`SVC_F_PERSIST`]).
    pub persist_timeout_s: u32,
    /// `SCHED_*`.
    pub sched: u8,
    /// `SVC_F_*`.
    pub flags: u8,
    /// Padding.
    pub _pad: [u8; 2],
    /// Persistence granularity (`persistence_granularity`) as a mask ANDed with the client
    /// address (all ones: per client).
    pub persist_mask: [u8; 16],
}

/// Value of [`BACKENDS_MAP`]. Written once per id; only `flags` and the thresholds change
/// while the id is in use (a change of address, port or method allocates a new id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Backend {
    /// Real server address.
    pub addr: [u8; 16],
    /// Real server port, network order (NAT rewrites to it; DR/TUN keep the VIP's).
    pub port: [u8; 2],
    /// [`FAMILY_V4`] / [`FAMILY_V6`]; 0 = unused id.
    pub family: u8,
    /// `METHOD_*`.
    pub method: u8,
    /// `BACKEND_F_*`.
    pub flags: u32,
    /// `uthreshold`: at this many connections (active + inactive) the backend is overloaded
    /// and gets no new ones (0: no limit). Counted only in services with [`SVC_F_COUNT`].
    pub uthreshold: u32,
    /// `lthreshold`: an overloaded backend takes new connections again below this many (0:
    /// below 3/4 of `uthreshold`, as IPVS).
    pub lthreshold: u32,
}

/// Key of [`CONN6_MAP`], [`PERSIST_MAP`] and [`NAT_MAP`]: a 5-tuple as seen on the wire.
// 4-aligned so the kernel side fills it a word at a time.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FlowKey {
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Source port, network order.
    pub sport: [u8; 2],
    /// Destination port, network order.
    pub dport: [u8; 2],
    /// IP protocol.
    pub proto: u8,
    /// Family.
    pub family: u8,
    /// Padding.
    pub _pad: [u8; 2],
}

/// One way of a [`CONN4_MAP`] set. `stamp` and `state` form the way's 64-bit life word
/// ([`crate::sched::life`]; 8-aligned), which writers replace by compare-and-swap: a free way
/// is all zero; a way being written has stamp 0 and state [`crate::sched::CONN_BUSY`] and is
/// skipped by readers; a new flow claims its way (free, its own, expired or least recently
/// seen) by swapping the old life word for the busy one, writes key, backend and check, then
/// stores the final life word. A writer outside the datapath (connection sync) installing an
/// entry without counting it leaves [`crate::sched::CONN_F_COUNTED`] out of `state`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ConnWay4 {
    /// The flow.
    pub key: FlowKey4,
    /// Backend id.
    pub backend: u32,
    /// [`conn_check`] of the flow's hash and `backend`.
    pub check: u32,
    /// Last packet, low 32 bits of `bpf_jiffies64` (0: free way).
    pub stamp: u32,
    /// Connection state ([`crate::sched::CONN_S_SYN`]...) and [`crate::sched::CONN_F_COUNTED`];
    /// 0 in entries written before states existed (read as not counted, never expiring by
    /// state: UDP's lifetime applies).
    pub state: u32,
}

/// Value of [`CONN4_MAP`]: one set.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ConnSet4 {
    /// The ways.
    pub ways: [ConnWay4; CONN_WAYS],
}

/// One way of a [`CONN6_MAP`] set. `stamp` and `state` form the way's 64-bit life word
/// ([`crate::sched::life`]; 8-aligned), which writers replace by compare-and-swap: a free way
/// is all zero; a way being written has stamp 0 and state [`crate::sched::CONN_BUSY`] and is
/// skipped by readers; a new flow claims its way (free, its own, expired or least recently
/// seen) by swapping the old life word for the busy one, writes key, backend and check, then
/// stores the final life word. A writer outside the datapath (connection sync) installing an
/// entry without counting it leaves [`crate::sched::CONN_F_COUNTED`] out of `state`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ConnWay6 {
    /// The flow.
    pub key: FlowKey,
    /// Backend id.
    pub backend: u32,
    /// [`conn_check`] of the flow's hash and `backend`.
    pub check: u32,
    /// Last packet, low 32 bits of `bpf_jiffies64` (0: free way).
    pub stamp: u32,
    /// Connection state ([`crate::sched::CONN_S_SYN`]...) and [`crate::sched::CONN_F_COUNTED`];
    /// 0 in entries written before states existed (read as not counted, never expiring by
    /// state: UDP's lifetime applies).
    pub state: u32,
}

/// Value of [`CONN6_MAP`]: one set.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ConnSet6 {
    /// The ways.
    pub ways: [ConnWay6; CONN_WAYS],
}

/// One lane of the connection-table hash: two words as one 64-bit word times an odd constant.
#[inline(always)]
const fn conn_lane(lo: u32, hi: u32, k: u64) -> u64 {
    (lo as u64 | (hi as u64) << 32).wrapping_mul(k)
}

/// The connection-table hash of the lanes' XOR: a xor-shift and a multiply (SplitMix64's
/// constants), the high half.
#[inline(always)]
const fn conn_fold(x: u64) -> u32 {
    let x = x ^ x >> 29;
    (x.wrapping_mul(0xbf58_476d_1ce4_e5b9) >> 32) as u32
}

/// The connection-table hash of an IPv4 flow: the set ([`conn_set`]) and check word
/// ([`conn_check`]) of its entry in [`CONN4_MAP`]. Not the Maglev hash ([`flow_hash4`]): an
/// established flow's packet needs only this one, two independent 64-bit multiplies and a
/// third (Murmur3's chain of rotates and multiplies cost ~15 ns per packet), and the
/// scheduler's hash is computed only for a flow the table does not hold. Part of the pinned
/// table's layout (`LAYOUT_REVISIONS`): `conn_hashes_are_pinned` keeps it from changing
/// silently.
#[inline(always)]
pub fn conn_hash4(k: &FlowKey4) -> u32 {
    let ports = u32::from_ne_bytes([k.sport[0], k.sport[1], k.dport[0], k.dport[1]]);
    conn_fold(
        conn_lane(u32::from_ne_bytes(k.src), u32::from_ne_bytes(k.dst), 0x9e37_79b9_7f4a_7c15)
            ^ conn_lane(ports, u32::from(k.proto), 0xc2b2_ae3d_27d4_eb4f),
    )
}

/// The connection-table hash of a flow ([`CONN6_MAP`] for IPv6); an IPv4 flow (family
/// [`FAMILY_V4`]) hashes as [`conn_hash4`] of the same 5-tuple.
#[inline(always)]
pub fn conn_hash(k: &FlowKey) -> u32 {
    if let Some(k4) = k.v4() {
        return conn_hash4(&k4);
    }
    let s = addr_words(&k.src);
    let d = addr_words(&k.dst);
    let ports = u32::from_ne_bytes([k.sport[0], k.sport[1], k.dport[0], k.dport[1]]);
    conn_fold(
        conn_lane(s[0], s[1], 0x9e37_79b9_7f4a_7c15)
            ^ conn_lane(s[2], s[3], 0xd6e8_feb8_6659_fd93)
            ^ conn_lane(d[0], d[1], 0xa076_1d64_78bd_642f)
            ^ conn_lane(d[2], d[3], 0xe703_7ed1_a0b4_28db)
            ^ conn_lane(ports, u32::from(k.proto), 0xc2b2_ae3d_27d4_eb4f),
    )
}

/// The check word of a connection-table way holding a flow of connection-table hash `hash`
/// ([`conn_hash4`], [`conn_hash`]) on `backend`.
#[inline(always)]
pub const fn conn_check(hash: u32, backend: u32) -> u32 {
    hash ^ backend.wrapping_mul(0x9e37_79b1) ^ 0x5bd1_e995
}

/// The set of a flow of connection-table hash `hash` ([`conn_hash4`], [`conn_hash`]).
#[inline(always)]
pub const fn conn_set(hash: u32) -> u32 {
    // Both halves folded in (the check word is the whole hash).
    (hash >> 16 ^ hash.wrapping_mul(0x85eb_ca6b) >> 8) & (CONN_SETS - 1)
}

impl FlowKey {
    /// The key of [`CONN4_MAP`] for an IPv4 flow; `None` for IPv6.
    #[inline(always)]
    pub fn v4(&self) -> Option<FlowKey4> {
        (self.family == FAMILY_V4).then_some(FlowKey4 {
            src: v4_of_16(&self.src),
            dst: v4_of_16(&self.dst),
            sport: self.sport,
            dport: self.dport,
            proto: self.proto,
            _pad: [0; 3],
        })
    }
}

/// Value of [`PERSIST_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ConnValue {
    /// Backend id.
    pub backend: u32,
    /// Padding.
    pub _pad: u32,
    /// Last packet, `bpf_ktime_get_ns` (CLOCK_MONOTONIC); persistence expiry reads it.
    pub last_seen_ns: u64,
}

/// Value of [`NAT_MAP`]: what a reply's source is translated back to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NatValue {
    /// The VIP.
    pub vip: [u8; 16],
    /// The virtual port, network order.
    pub vport: [u8; 2],
    /// Padding.
    pub _pad: [u8; 2],
    /// Service id (for counters).
    pub service: u32,
}

/// Key of [`NEIGH_MAP`] and [`LOCAL_VIPS_MAP`]: an address.
// 4-aligned so the kernel side fills it a word at a time.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct AddrKey {
    /// Address.
    pub addr: [u8; 16],
    /// Family.
    pub family: u8,
    /// Padding.
    pub _pad: [u8; 3],
}

/// Value of [`NEIGH_MAP`]: how to reach a next hop.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NeighValue {
    /// Egress interface.
    pub ifindex: u32,
    /// Source MAC (the egress interface's).
    pub smac: [u8; 6],
    /// Destination MAC.
    pub dmac: [u8; 6],
}

/// Value of [`NH_CACHE_MAP`]: a backend's next hop as `bpf_fib_lookup` last answered.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NhCache {
    /// Egress interface.
    pub ifindex: u32,
    /// Destination MAC (then the source MAC: the 12 bytes of an Ethernet header, copied as
    /// three words).
    pub dmac: [u8; 6],
    /// Source MAC.
    pub smac: [u8; 6],
    /// MTU of the route (0: unknown, not checked).
    pub mtu: u16,
    /// Padding.
    pub _pad: [u8; 6],
    /// When it was filled, `bpf_jiffies64` (0: empty).
    pub stamp: u64,
}

/// Packets and bytes (per CPU) of a service or backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PktBytes {
    /// Packets.
    pub packets: u64,
    /// Bytes (whole frames as received).
    pub bytes: u64,
}

/// Value of [`GLOBALS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Globals {
    /// `G_*`.
    pub flags: u32,
    /// Outer source of IPIP packets; its low `tun_v4_host_bits` bits are replaced by the flow
    /// hash so real servers' RSS spreads tunnelled flows.
    pub tun_src_v4: [u8; 4],
    /// Outer source of IP6IP6 packets (low `tun_v6_host_bits` bits varied per flow).
    pub tun_src_v6: [u8; 16],
    /// Host bits of `tun_src_v4` varied per flow (0..=16).
    pub tun_v4_host_bits: u8,
    /// Host bits of `tun_src_v6` varied per flow (0..=32).
    pub tun_v6_host_bits: u8,
    /// Padding.
    pub _pad: [u8; 2],
}

/// The `dst` of a service-wide persistence template ([`SVC_F_PERSIST_SERVICE`]): the service
/// id where IPVS puts the fwmark; such a template has protocol 0 (`IPPROTO_IP`), which no
/// per-key template has.
#[inline(always)]
pub fn service_template_dst(id: u32) -> [u8; 16] {
    let b = id.to_be_bytes();
    [0xff, b'k', b'a', 0, b[0], b[1], b[2], b[3], 0, 0, 0, 0, 0, 0, 0, 0]
}

/// The slot tried at probe `k` (1..=[`FALLBACK_PROBES`]) after slot `first` of a table of
/// `len` slots (0 for an empty table): a stride prime to the Maglev table size, so the probes
/// of a Maglev table are distinct.
#[inline(always)]
pub const fn fallback_slot(first: u32, k: u32, len: u32) -> u32 {
    // No division by zero (a panic path the verifier rejects).
    if len == 0 {
        return 0;
    }
    ((first as u64 + k as u64 * 40_503) % len as u64) as u32
}


/// Murmur3's 32-bit finaliser-style mix of `words` with a fixed seed: the flow hash of the
/// kernel (deterministic, no per-node randomness, so two directors with the same config pick
/// the same backend for a flow).
#[inline(always)]
pub fn hash_words<const N: usize>(words: &[u32; N]) -> u32 {
    let mut h: u32 = 0x9747_b28c;
    let mut i = 0;
    while i < N {
        let mut k = words[i].wrapping_mul(0xcc9e_2d51);
        k = k.rotate_left(15).wrapping_mul(0x1b87_3593);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
        i += 1;
    }
    h ^= (N as u32) * 4;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The 16-byte address as four native-endian words (for [`hash_words`]).
#[inline(always)]
pub fn addr_words(a: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
}

/// Hash of an IPv4 flow for the Maglev scheduler (and the tunnel source): source,
/// destination, ports and protocol, four words.
#[inline(always)]
pub fn flow_hash4(k: &FlowKey4) -> u32 {
    hash_words(&[
        u32::from_ne_bytes(k.src),
        u32::from_ne_bytes(k.dst),
        u32::from_ne_bytes([k.sport[0], k.sport[1], k.dport[0], k.dport[1]]),
        u32::from(k.proto),
    ])
}

/// Hash of a flow for the Maglev scheduler: source, destination, ports and protocol. An IPv4
/// flow (family [`FAMILY_V4`]) hashes as [`flow_hash4`] of the same 5-tuple.
#[inline(always)]
pub fn flow_hash(k: &FlowKey) -> u32 {
    if let Some(k4) = k.v4() {
        return flow_hash4(&k4);
    }
    let s = addr_words(&k.src);
    let d = addr_words(&k.dst);
    let ports = u32::from_ne_bytes([k.sport[0], k.sport[1], k.dport[0], k.dport[1]]);
    hash_words(&[
        s[0],
        s[1],
        s[2],
        s[3],
        d[0],
        d[1],
        d[2],
        d[3],
        ports,
        u32::from(k.proto),
    ])
}

/// An IPv4 address in the 16-byte form of the maps (the address, then 12 zero bytes): the one
/// encoding every key and value with an address uses.
#[inline(always)]
pub const fn v4_in_16(a: [u8; 4]) -> [u8; 16] {
    [a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// The IPv4 address of a 16-byte address of family [`FAMILY_V4`] (its first 4 bytes).
#[inline(always)]
pub const fn v4_of_16(a: &[u8; 16]) -> [u8; 4] {
    [a[0], a[1], a[2], a[3]]
}

/// The bit of [`VIP_FILTER_MAP`] of an address in the 16-byte form (an IPv4 address in the
/// first 4 bytes, the rest zero): its four little-endian words XORed, times the golden ratio,
/// top [`VIP_FILTER_BITS_LOG2`] bits. The kernel computes it from the packet's destination
/// words (for IPv4 the one word).
#[inline(always)]
pub fn vip_filter_bit(a: &[u8; 16]) -> u32 {
    let w = |i: usize| u32::from_le_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
    vip_filter_fold(w(0) ^ w(4) ^ w(8) ^ w(12))
}

/// [`vip_filter_bit`] of an address whose words XOR to `fold`.
#[inline(always)]
pub const fn vip_filter_fold(fold: u32) -> u32 {
    fold.wrapping_mul(0x9e37_79b1) >> (32 - VIP_FILTER_BITS_LOG2)
}

/// The words of [`VIP_FILTER_MAP`] for a set of addresses (16-byte form).
pub fn vip_filter<'a>(addrs: impl IntoIterator<Item = &'a [u8; 16]>) -> [u64; VIP_FILTER_WORDS as usize] {
    let mut words = [0u64; VIP_FILTER_WORDS as usize];
    for a in addrs {
        let bit = vip_filter_bit(a);
        words[(bit >> 6) as usize] |= 1 << (bit & 63);
    }
    words
}

/// Hash of one address (source-hash and destination-hash schedulers).
#[inline(always)]
pub fn addr_hash(a: &[u8; 16]) -> u32 {
    hash_words(&addr_words(a))
}

/// `a & mask`, bytewise.
#[inline(always)]
pub fn and_mask(a: &[u8; 16], mask: &[u8; 16]) -> [u8; 16] {
    let (a0, a1) = (
        u64::from_ne_bytes(half(a, 0)),
        u64::from_ne_bytes(half(a, 8)),
    );
    let (m0, m1) = (
        u64::from_ne_bytes(half(mask, 0)),
        u64::from_ne_bytes(half(mask, 8)),
    );
    let (r0, r1) = ((a0 & m0).to_ne_bytes(), (a1 & m1).to_ne_bytes());
    [
        r0[0], r0[1], r0[2], r0[3], r0[4], r0[5], r0[6], r0[7], r1[0], r1[1], r1[2], r1[3], r1[4],
        r1[5], r1[6], r1[7],
    ]
}

#[inline(always)]
fn half(a: &[u8; 16], at: usize) -> [u8; 8] {
    [
        a[at],
        a[at + 1],
        a[at + 2],
        a[at + 3],
        a[at + 4],
        a[at + 5],
        a[at + 6],
        a[at + 7],
    ]
}

/// The mask keeping the first `prefix` bits of an address of `len` bytes (4 or 16); the bytes
/// past `len` are zero.
pub fn prefix_mask(prefix: u8, len: usize) -> [u8; 16] {
    let mut m = [0u8; 16];
    let mut left = u32::from(prefix);
    for b in m.iter_mut().take(len) {
        let bits = left.min(8);
        *b = if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
        left -= bits;
    }
    m
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: all of these are `bytemuck::Pod` (no padding, any bit pattern is valid).
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for ServiceKey4 {}
    unsafe impl aya::Pod for FlowKey4 {}
    unsafe impl aya::Pod for ServiceValue {}
    unsafe impl aya::Pod for ServiceSlot4 {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for ConnValue {}
    unsafe impl aya::Pod for ConnSet4 {}
    unsafe impl aya::Pod for ConnSet6 {}
    unsafe impl aya::Pod for NatValue {}
    unsafe impl aya::Pod for AddrKey {}
    unsafe impl aya::Pod for NeighValue {}
    unsafe impl aya::Pod for PktBytes {}
    unsafe impl aya::Pod for Globals {}
    unsafe impl aya::Pod for NhCache {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    /// 262,144 flows (the table's size) from one client's source ports, and from a /16 of
    /// clients to one port: the connection-table hash leaves no more flows without a way of
    /// their set than Murmur3 (the scheduler's hash) would, within 10 %.
    #[test]
    fn conn_hashes_spread_flows_over_the_sets() {
        extern crate std;
        use std::vec;
        let by_port = |i: u32| FlowKey4 { src: [198, 18, 0, 1 + (i >> 16) as u8], dst: [198, 19, 0, 100], sport: (i as u16).to_be_bytes(), dport: 80u16.to_be_bytes(), proto: 6, _pad: [0; 3] };
        let by_addr = |i: u32| FlowKey4 { src: [198, 18, (i >> 8) as u8, i as u8], dst: [198, 19, 0, 100], sport: (40_000 + (i >> 16) as u16).to_be_bytes(), dport: 443u16.to_be_bytes(), proto: 17, _pad: [0; 3] };
        for key in [&by_port as &dyn Fn(u32) -> FlowKey4, &by_addr] {
            let overflow = |h: &dyn Fn(&FlowKey4) -> u32| {
                let mut per_set = vec![0u32; CONN_SETS as usize];
                for i in 0..CONN_TABLE_SIZE {
                    per_set[conn_set(h(&key(i))) as usize] += 1;
                }
                per_set.iter().map(|n| n.saturating_sub(CONN_WAYS as u32)).sum::<u32>()
            };
            let (ours, murmur) = (overflow(&conn_hash4), overflow(&flow_hash4));
            assert!(ours <= murmur + murmur / 10, "{ours} flows overflow their set, {murmur} with Murmur3");
        }
    }

    /// The connection-table hash is part of the pinned table's layout: entries written by one
    /// ka are found by the next only if it hashes the same (else `LAYOUT_REVISIONS` changes
    /// and the table is rehashed at upgrade).
    #[test]
    fn conn_hashes_are_pinned() {
        let k4 = FlowKey4 { src: [198, 18, 0, 1], dst: [198, 19, 0, 100], sport: 40_000u16.to_be_bytes(), dport: 80u16.to_be_bytes(), proto: 6, _pad: [0; 3] };
        let mut k = FlowKey { src: [0; 16], dst: [0; 16], sport: k4.sport, dport: k4.dport, proto: 6, family: FAMILY_V4, _pad: [0; 2] };
        k.src[..4].copy_from_slice(&k4.src);
        k.dst[..4].copy_from_slice(&k4.dst);
        assert_eq!(conn_hash(&k), conn_hash4(&k4));
        let v6 = FlowKey { src: [0xfd, 0, 0x01, 0x98, 0, 0x18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], dst: [0xfd, 0, 0x01, 0x98, 0, 0x18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x64], sport: 40_000u16.to_be_bytes(), dport: 443u16.to_be_bytes(), proto: 17, family: FAMILY_V6, _pad: [0; 2] };
        assert_eq!((conn_hash4(&k4), conn_hash(&v6)), (0xb3bf_bec8, 0x7e52_412f));
        // Every field counts.
        let mut other = k4;
        other.proto = 17;
        assert_ne!(conn_hash4(&other), conn_hash4(&k4));
        other = k4;
        other.dport = 81u16.to_be_bytes();
        assert_ne!(conn_hash4(&other), conn_hash4(&k4));
    }

    #[test]
    fn service_slots_spread_a_vip_range() {
        // 256 consecutive VIPs on one port, and one VIP on 256 ports: no slot takes more than
        // two keys of either set.
        let by_addr = |i: u16| ServiceKey4 { addr: [198, 18, 1, i as u8], port: 80u16.to_be_bytes(), proto: 6, _pad: 0 };
        let by_port = |i: u16| ServiceKey4 { addr: [198, 18, 1, 1], port: (8000 + i).to_be_bytes(), proto: 17, _pad: 0 };
        for key in [&by_addr as &dyn Fn(u16) -> ServiceKey4, &by_port] {
            let mut per_slot = [0u8; SVC_SLOTS4 as usize];
            for i in 0..256 {
                let slot = svc_slot4(&key(i));
                assert!(slot < SVC_SLOTS4);
                per_slot[slot as usize] += 1;
            }
            assert!(per_slot.iter().all(|n| *n <= 2));
        }
        // The kernel's form: the key's two words as loaded.
        let k = ServiceKey4 { addr: [198, 18, 0, 1], port: 80u16.to_be_bytes(), proto: 6, _pad: 0 };
        assert_eq!(svc_slot4(&k), svc_slot4_words(u32::from_ne_bytes(k.addr), u32::from_ne_bytes([0, 80, 6, 0])));
    }

    #[test]
    fn sizes_have_no_hidden_padding() {
        assert_eq!(size_of::<ServiceKey>(), 20);
        assert_eq!(size_of::<ServiceKey4>(), 8);
        assert_eq!(size_of::<FlowKey4>(), 16);
        assert_eq!(size_of::<ServiceValue>(), 56);
        assert_eq!(size_of::<Backend>(), 32);
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<ConnValue>(), 16);
        assert_eq!(size_of::<ConnWay4>(), 32);
        assert_eq!(size_of::<ConnWay6>(), 56);
        // The life word (stamp, state) of every way of a set is 8-aligned.
        assert_eq!(core::mem::offset_of!(ConnWay4, stamp) % 8, 0);
        assert_eq!(core::mem::offset_of!(ConnWay6, stamp) % 8, 0);
        assert_eq!(core::mem::offset_of!(ConnWay4, state), core::mem::offset_of!(ConnWay4, stamp) + 4);
        assert_eq!(core::mem::offset_of!(ConnWay6, state), core::mem::offset_of!(ConnWay6, stamp) + 4);
        assert!(CONN_SETS.is_power_of_two());
        assert!(SVC_SLOTS4.is_power_of_two());
        assert_eq!(size_of::<ServiceSlot4>(), 64);
        assert_eq!(size_of::<NatValue>(), 24);
        assert_eq!(size_of::<NeighValue>(), 16);
        assert_eq!(size_of::<Globals>(), 28);
        assert_eq!(size_of::<NhCache>(), 32);
    }

    #[test]
    fn hash_is_stable() {
        // Pinned: a change of the flow hash moves flows between backends across versions.
        assert_eq!(hash_words(&[1, 2, 3]), hash_words(&[1, 2, 3]));
        assert_ne!(hash_words(&[1, 2, 3]), hash_words(&[1, 2, 4]));
    }

    #[test]
    fn v4_flow_hash_is_the_same_from_either_key() {
        let k4 = FlowKey4 { src: [198, 18, 0, 1], dst: [198, 18, 0, 2], sport: [1, 2], dport: [0, 80], proto: 6, _pad: [0; 3] };
        let mut k = FlowKey { sport: k4.sport, dport: k4.dport, proto: 6, family: FAMILY_V4, ..Default::default() };
        k.src[..4].copy_from_slice(&k4.src);
        k.dst[..4].copy_from_slice(&k4.dst);
        assert_eq!(flow_hash(&k), flow_hash4(&k4));
        k.family = FAMILY_V6;
        assert_ne!(flow_hash(&k), flow_hash4(&k4));
    }

    /// Every VIP's bit is set, IPv4 in the 16-byte form hashes as its one word, and the bits
    /// are pinned (the kernel computes them from the packet: a change here without the kernel
    /// would make VIP traffic pass).
    #[test]
    fn vip_filter_holds_every_vip() {
        let v4 = v4_in_16([198, 51, 100, 1]);
        let v6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let f = vip_filter([&v4, &v6]);
        for a in [&v4, &v6] {
            let bit = vip_filter_bit(a);
            assert!(bit < VIP_FILTER_WORDS * 64);
            assert_ne!(f[(bit >> 6) as usize] & (1 << (bit & 63)), 0);
        }
        assert_eq!(f.iter().map(|w| w.count_ones()).sum::<u32>(), 2);
        assert_eq!(vip_filter_bit(&v4), vip_filter_fold(u32::from_le_bytes([198, 51, 100, 1])));
        assert_eq!((vip_filter_bit(&v4), vip_filter_bit(&v6)), (VIP_BIT_V4, VIP_BIT_V6));
        assert_eq!(v4_of_16(&v4), [198, 51, 100, 1]);
    }

    /// The golden bits of `vip_filter_holds_every_vip`.
    const VIP_BIT_V4: u32 = 170_281;
    const VIP_BIT_V6: u32 = 21_911;

    #[test]
    fn mask_keeps_prefix() {
        let m = prefix_mask(20, 4);
        assert_eq!(&m[..5], &[0xff, 0xff, 0xf0, 0, 0]);
        assert_eq!(and_mask(&[0xff; 16], &m)[..5], [0xff, 0xff, 0xf0, 0, 0]);
        let m = prefix_mask(64, 16);
        assert_eq!(&m[7..9], &[0xff, 0]);
        assert_eq!(prefix_mask(32, 4)[..5], [0xff, 0xff, 0xff, 0xff, 0]);
    }

    /// A service's bank capacity grows with its real servers, by powers of two, so its ring
    /// (the prime below) keeps at least 100 slots per server; the largest bank holds the
    /// largest ring; every ring is prime.
    #[test]
    fn table_capacity_follows_the_servers() {
        let cases = [(0, 256), (1, 256), (2, 256), (3, 512), (5, 512), (6, 1024), (100, 16_384), (327, 32_768), (328, 65_536), (655, 65_536), (10_000, 65_536)];
        for (servers, cap) in cases {
            assert_eq!(table_capacity(servers), cap, "{servers} servers");
            let ring = ring_size(cap);
            assert!(ring < cap && ring > cap / 2, "{servers}: ring {ring} in a bank of {cap}");
            assert!(ring >= servers.min(655) * RING_SLOTS_PER_SERVER, "{servers}: ring {ring}");
        }
        assert_eq!(ring_size(TABLE_SIZE), MAGLEV_RING_SIZE);
        for r in RING_SIZES {
            assert!((2..r).take_while(|d| d * d <= r).all(|d| r % d != 0), "{r} is prime");
        }
        assert_eq!(TABLE_POOL_SLOTS % (2 * TABLE_SIZE), 0, "the pool holds whole regions of the largest banks");
    }
}
