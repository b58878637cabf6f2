//! Every map of the ka XDP programs, and nothing else (Katran's `balancer_maps.h`): the layer
//! above the helpers ([`crate::ptr`], [`crate::mem`], [`crate::csum`]) and below the parser.
//! Names, sizes and key/value layouts come from `ka_common`; each map is named by its Rust
//! identifier, checked at compile time against ka-common's name (`ka_map!`), so a rename on
//! either side fails the build instead of loading a map userspace cannot find.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use ka_common::{
    bench::{GenConfig, GEN_MAP, GEN_SEQ_MAP, FWD_MAP, SINK_COUNTERS, SINK_MAP},
    lb::{
        AddrKey, Backend, ConnSet4, ConnSet6, ConnValue, FlowKey, Globals, NatValue, NeighValue, NhCache, PktBytes,
        ServiceKey, ServiceKey4, ServiceSlot4, ServiceValue, BACKENDS_MAP, BACKEND_STATS_MAP, BPF_F_NO_COMMON_LRU, CONN4_MAP,
        CONN6_MAP, CONN_SETS, GLOBALS_MAP, LOCAL_MACS_MAP, LOCAL_MACS_MAX, LOCAL_MAC_SLOTS, LOCAL_MAC_SLOTS_MAP, LOCAL_VIPS_MAP, LOCAL_VIPS_SIZE,
        MASTER_MAP, MAX_BACKENDS, MAX_MASTER_SLOTS, MAX_SERVICES, MAX_SERVICE_KEYS, NAT_MAP, NAT_TABLE_SIZE,
        NEIGH_MAP, NEIGH_TABLE_SIZE, NH_CACHE_MAP, PERSIST_MAP, PERSIST_TABLE_SIZE, RR_MAP, SERVICES4_MAP,
        SERVICES6_MAP, SERVICE_STATS_MAP, SVC_SLOTS4, SVC_SLOTS4_MAP, TABLES_MAP, TABLE_BANKS, TABLE_POOL_SLOTS, VIP_FILTER_MAP,
        VIP_FILTER_WORDS,
    },
    maps::{same_name, META_ENTRIES, META_KEY_LEN, META_MAP, SCRATCH_MAP, STATS_MAP},
    sched::{
        BackendConns, ConnTimeouts, DestList, LblcKey, LblcValue, BACKEND_CONNS_MAP, BACKEND_TALLY_MAP, BPF_F_MMAPABLE,
        CONN_TIMEOUTS_MAP, DESTS_MAP, LBLC_MAP, LBLC_TABLE_SIZE,
    },
    stats::{Bundles, Counters, STATS_BUNDLES_MAP, STATS_ENTRIES},
    sync::{SYNC_EVENTS_BYTES, SYNC_EVENTS_MAP},
    vrrp_fast::{
        VrrpInstance, VrrpKey, VrrpRate, VrrpVridSlots, MAX_VRRP_INSTANCES, VRRP_EVENTS_BYTES, VRRP_EVENTS_MAP,
        VRRP_INSTANCES_MAP, VRRP_RATE_MAP, VRRP_SEEN_MAP, VRRP_VRID_ENTRIES, VRRP_VRID_MAP,
    },
};

/// Declares a map named by its identifier, and checks at compile time that the identifier is
/// ka-common's name for it.
macro_rules! ka_map {
    ($(#[$doc:meta])* $name:ident = $common:expr, $ty:ty, $init:expr) => {
        $(#[$doc])*
        #[map]
        pub static $name: $ty = $init;
        const _: () = assert!(same_name(stringify!($name), $common), concat!(stringify!($name), " is not ka-common's name"));
    };
}

ka_map!(
    /// Every counter, one `Counters` array per CPU (`ka_common::stats`).
    KA_STATS = STATS_MAP, PerCpuArray<Counters>, PerCpuArray::with_max_entries(STATS_ENTRIES, 0)
);
ka_map!(
    /// Bundle counts, one `Bundles` array per CPU (`ka_common::stats::bundle_counters`).
    KA_STATS_BUNDLES = STATS_BUNDLES_MAP, PerCpuArray<Bundles>, PerCpuArray::with_max_entries(1, 0)
);
ka_map!(
    /// IPv4 services by (VIP, port, protocol).
    KA_SERVICES4 = SERVICES4_MAP, HashMap<ServiceKey4, ServiceValue>, HashMap::with_max_entries(MAX_SERVICE_KEYS, 0)
);
ka_map!(
    /// The IPv4 service slots: a direct-mapped copy of `KA_SERVICES4` userspace writes.
    KA_SVC_SLOTS4 = SVC_SLOTS4_MAP, Array<ServiceSlot4>, Array::with_max_entries(SVC_SLOTS4, 0)
);
ka_map!(
    /// IPv6 services by (VIP, port, protocol, family).
    KA_SERVICES6 = SERVICES6_MAP, HashMap<ServiceKey, ServiceValue>, HashMap::with_max_entries(MAX_SERVICE_KEYS, 0)
);
ka_map!(
    /// The VIP filter: a bit per hashed VIP address (`ka_common::lb::vip_filter_bit`).
    KA_VIP_FILTER = VIP_FILTER_MAP, Array<u64>, Array::with_max_entries(VIP_FILTER_WORDS, 0)
);
ka_map!(
    /// Backends by id.
    KA_BACKENDS = BACKENDS_MAP, Array<Backend>, Array::with_max_entries(MAX_BACKENDS, 0)
);
ka_map!(
    /// The scheduling-table pool.
    KA_TABLES = TABLES_MAP, Array<u32>, Array::with_max_entries(TABLE_POOL_SLOTS, 0)
);
ka_map!(
    /// Round-robin cursors, per CPU, by service id.
    KA_RR = RR_MAP, PerCpuArray<u32>, PerCpuArray::with_max_entries(MAX_SERVICES, 0)
);
ka_map!(
    /// Candidate lists of the least-connection schedulers, two banks per service.
    KA_DESTS = DESTS_MAP, Array<DestList>, Array::with_max_entries(MAX_SERVICES * TABLE_BANKS, 0)
);
ka_map!(
    /// Connection counts per backend (mmap-able: userspace zeroes and clears single fields
    /// without overwriting counts the kernel is adding to).
    KA_BACKEND_CONNS = BACKEND_CONNS_MAP, Array<BackendConns>, Array::with_max_entries(MAX_BACKENDS, BPF_F_MMAPABLE)
);
ka_map!(
    /// The sweeper's tally of uncounted entries (mmap-able: userspace reads and zeroes it
    /// between sweeps).
    KA_BACKEND_TALLY = BACKEND_TALLY_MAP, Array<BackendConns>, Array::with_max_entries(MAX_BACKENDS, BPF_F_MMAPABLE)
);
ka_map!(
    /// Connection lifetimes and the flood-mode rate.
    KA_CONN_TIMEOUTS = CONN_TIMEOUTS_MAP, Array<ConnTimeouts>, Array::with_max_entries(1, 0)
);
ka_map!(
    /// The `lblc`/`lblcr` destination cache.
    KA_LBLC = LBLC_MAP, LruHashMap<LblcKey, LblcValue>, LruHashMap::with_max_entries(LBLC_TABLE_SIZE, 0)
);
ka_map!(
    /// IPv4 connection table (set-associative).
    KA_CONNS4 = CONN4_MAP, Array<ConnSet4>, Array::with_max_entries(CONN_SETS, 0)
);
ka_map!(
    /// IPv6 connection table (set-associative).
    KA_CONNS6 = CONN6_MAP, Array<ConnSet6>, Array::with_max_entries(CONN_SETS, 0)
);
ka_map!(
    /// Persistence templates (shared by every CPU, one LRU list per CPU).
    KA_PERSIST = PERSIST_MAP, LruHashMap<FlowKey, ConnValue>, LruHashMap::with_max_entries(PERSIST_TABLE_SIZE, BPF_F_NO_COMMON_LRU)
);
ka_map!(
    /// NAT reverse entries (shared by every CPU, one LRU list per CPU).
    KA_NAT = NAT_MAP, LruHashMap<FlowKey, NatValue>, LruHashMap::with_max_entries(NAT_TABLE_SIZE, BPF_F_NO_COMMON_LRU)
);
ka_map!(
    /// Next hops userspace resolved (the fallback of `bpf_fib_lookup`).
    KA_NEIGH = NEIGH_MAP, HashMap<AddrKey, NeighValue>, HashMap::with_max_entries(NEIGH_TABLE_SIZE, 0)
);
ka_map!(
    /// Each CPU's cached next hop per backend.
    KA_NH_CACHE = NH_CACHE_MAP, PerCpuArray<NhCache>, PerCpuArray::with_max_entries(MAX_BACKENDS, 0)
);
ka_map!(
    /// Mastership flags by slot.
    KA_MASTER = MASTER_MAP, Array<u32>, Array::with_max_entries(MAX_MASTER_SLOTS, 0)
);
ka_map!(
    /// Global settings.
    KA_GLOBALS = GLOBALS_MAP, Array<Globals>, Array::with_max_entries(1, 0)
);
ka_map!(
    /// The MACs frames to a service may be addressed to (key: the MAC, then two zero bytes).
    KA_LOCAL_MACS = LOCAL_MACS_MAP, HashMap<[u8; 8], u8>, HashMap::with_max_entries(LOCAL_MACS_MAX, 0)
);
ka_map!(
    /// The direct-mapped copy of `KA_LOCAL_MACS` (`ka_common::lb::LOCAL_MAC_SLOTS_MAP`).
    KA_LOCAL_MAC_SLOTS = LOCAL_MAC_SLOTS_MAP, Array<u64>, Array::with_max_entries(LOCAL_MAC_SLOTS, 0)
);
ka_map!(
    /// Packets and bytes per service, per CPU.
    KA_SVC_STATS = SERVICE_STATS_MAP, PerCpuArray<PktBytes>, PerCpuArray::with_max_entries(MAX_SERVICES, 0)
);
ka_map!(
    /// Packets and bytes per backend, per CPU.
    KA_BACKEND_STATS = BACKEND_STATS_MAP, PerCpuArray<PktBytes>, PerCpuArray::with_max_entries(MAX_BACKENDS, 0)
);
ka_map!(
    /// The real server's local VIPs (`ka_decap`).
    KA_LOCAL_VIPS = LOCAL_VIPS_MAP, HashMap<AddrKey, u32>, HashMap::with_max_entries(LOCAL_VIPS_SIZE, 0)
);
ka_map!(
    /// VRRP fast-path instances.
    KA_VRRP = VRRP_INSTANCES_MAP, HashMap<VrrpKey, VrrpInstance>, HashMap::with_max_entries(MAX_VRRP_INSTANCES, 0)
);
ka_map!(
    /// VRRP fast-path instances by (VRID, family), a few interfaces each: the first look-up
    /// (`KA_VRRP` holds the rest).
    KA_VRRP_VRID = VRRP_VRID_MAP, Array<VrrpVridSlots>, Array::with_max_entries(VRRP_VRID_ENTRIES, 0)
);
ka_map!(
    /// Last steady advert per VRRP instance, at the instance's `seen_slot`.
    KA_VRRP_SEEN = VRRP_SEEN_MAP, Array<u64>, Array::with_max_entries(MAX_VRRP_INSTANCES, 0)
);
ka_map!(
    /// VRRP changes for the engine.
    KA_VRRP_EVENTS = VRRP_EVENTS_MAP, RingBuf, RingBuf::with_byte_size(VRRP_EVENTS_BYTES, 0)
);
ka_map!(
    /// Budget of below-reference adverts per VRRP instance (written by the kernel only).
    KA_VRRP_RATE = VRRP_RATE_MAP, LruHashMap<VrrpKey, VrrpRate>, LruHashMap::with_max_entries(MAX_VRRP_INSTANCES, 0)
);
ka_map!(
    /// New flows for the connection-sync sender.
    KA_SYNC_EVENTS = SYNC_EVENTS_MAP, RingBuf, RingBuf::with_byte_size(SYNC_EVENTS_BYTES, 0)
);
ka_map!(
    /// Written and read by userspace only (layout fingerprints of the pinned maps, modes of the
    /// pinned links); the programs never look at it.
    KA_META = META_MAP, HashMap<[u8; META_KEY_LEN], u64>, HashMap::with_max_entries(META_ENTRIES, 0)
);
ka_map!(
    /// The end-to-end benchmark generator's template.
    KA_GEN = GEN_MAP, Array<GenConfig>, Array::with_max_entries(1, 0)
);
ka_map!(
    /// The generator's per-CPU flow counter.
    KA_GEN_SEQ = GEN_SEQ_MAP, PerCpuArray<u32>, PerCpuArray::with_max_entries(1, 0)
);
ka_map!(
    /// The benchmark sink's counters.
    KA_SINK = SINK_MAP, PerCpuArray<u64>, PerCpuArray::with_max_entries(SINK_COUNTERS, 0)
);
ka_map!(
    /// The forwarding floor's egress interface.
    KA_FWD = FWD_MAP, Array<u32>, Array::with_max_entries(1, 0)
);

/// Bytes of one CPU's working memory ([`KA_SCRATCH`]); `crate::scratch::Work` must fit.
pub const SCRATCH_BYTES: usize = 1024;

/// One CPU's working memory, as plain words: its layout is `crate::scratch`'s, a layer above
/// (so this module needs no type from the paths).
pub type ScratchWords = [u64; SCRATCH_BYTES / 8];

ka_map!(
    /// Per-CPU working memory of one packet (`crate::scratch`).
    KA_SCRATCH = SCRATCH_MAP, PerCpuArray<ScratchWords>, PerCpuArray::with_max_entries(1, 0)
);

/// The global flags (0 when the map was never written).
#[inline(always)]
pub fn global_flags() -> u32 {
    KA_GLOBALS.get(0).map_or(0, |g| g.flags)
}
