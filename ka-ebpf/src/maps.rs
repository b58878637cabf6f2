//! Every map of the ka XDP programs except `KA_STATS` (in [`crate::stats`]) and
//! `KA_SYNC_EVENTS` (in [`crate::sync`]). Names, sizes and
//! value layouts come from `ka_common::lb` and `ka_common::vrrp_fast`.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use ka_common::{
    lb::{
        AddrKey, Backend, ConnSet4, ConnSet6, ConnValue, FlowKey, Globals, NatValue, NeighValue,
        NhCache, PktBytes, ServiceKey, ServiceKey4, ServiceValue, BPF_F_NO_COMMON_LRU, CONN_SETS, LOCAL_VIPS_SIZE, MAX_BACKENDS, MAX_MASTER_SLOTS,
        MAX_SERVICES, MAX_SERVICE_KEYS, NAT_TABLE_SIZE, NEIGH_TABLE_SIZE, PERSIST_TABLE_SIZE, TABLE_BANKS,
        TABLE_POOL_SLOTS,
    },
    sched::{
        BackendConns, ConnTimeouts, DestList, LblcKey, LblcValue, BPF_F_MMAPABLE, LBLC_TABLE_SIZE,
    },
    vrrp_fast::{VrrpInstance, VrrpKey, VrrpRate, MAX_VRRP_INSTANCES, VRRP_EVENTS_BYTES},
};

/// `ka_common::lb::SERVICES4_MAP`.
#[map(name = "KA_SERVICES4")]
pub static KA_SERVICES4: HashMap<ServiceKey4, ServiceValue> =
    HashMap::with_max_entries(MAX_SERVICE_KEYS, 0);

/// `ka_common::lb::SERVICES6_MAP`.
#[map(name = "KA_SERVICES6")]
pub static KA_SERVICES6: HashMap<ServiceKey, ServiceValue> =
    HashMap::with_max_entries(MAX_SERVICE_KEYS, 0);

/// `ka_common::lb::BACKENDS_MAP`.
#[map(name = "KA_BACKENDS")]
pub static KA_BACKENDS: Array<Backend> = Array::with_max_entries(MAX_BACKENDS, 0);

/// `ka_common::lb::TABLES_MAP`.
#[map(name = "KA_TABLES")]
pub static KA_TABLES: Array<u32> = Array::with_max_entries(TABLE_POOL_SLOTS, 0);

/// `ka_common::lb::RR_MAP`.
#[map(name = "KA_RR")]
pub static KA_RR: PerCpuArray<u32> = PerCpuArray::with_max_entries(MAX_SERVICES, 0);

/// `ka_common::sched::DESTS_MAP`.
#[map(name = "KA_DESTS")]
pub static KA_DESTS: Array<DestList> = Array::with_max_entries(MAX_SERVICES * TABLE_BANKS, 0);

/// `ka_common::sched::BACKEND_CONNS_MAP` (mmap-able: userspace zeroes and clears single
/// fields without overwriting counts the kernel is adding to).
#[map(name = "KA_BACKEND_CONNS")]
pub static KA_BACKEND_CONNS: Array<BackendConns> = Array::with_max_entries(MAX_BACKENDS, BPF_F_MMAPABLE);

/// `ka_common::sched::BACKEND_TALLY_MAP` (mmap-able: userspace reads and zeroes it between
/// sweeps).
#[map(name = "KA_BACKEND_TALLY")]
pub static KA_BACKEND_TALLY: Array<BackendConns> = Array::with_max_entries(MAX_BACKENDS, BPF_F_MMAPABLE);

/// `ka_common::sched::CONN_TIMEOUTS_MAP`.
#[map(name = "KA_CONN_TIMEOUTS")]
pub static KA_CONN_TIMEOUTS: Array<ConnTimeouts> = Array::with_max_entries(1, 0);

/// `ka_common::sched::LBLC_MAP`.
#[map(name = "KA_LBLC")]
pub static KA_LBLC: LruHashMap<LblcKey, LblcValue> = LruHashMap::with_max_entries(LBLC_TABLE_SIZE, 0);

/// `ka_common::lb::CONN4_MAP`.
#[map(name = "KA_CONNS4")]
pub static KA_CONNS4: Array<ConnSet4> = Array::with_max_entries(CONN_SETS, 0);

/// `ka_common::lb::CONN6_MAP`.
#[map(name = "KA_CONNS6")]
pub static KA_CONNS6: Array<ConnSet6> = Array::with_max_entries(CONN_SETS, 0);

/// `ka_common::lb::PERSIST_MAP` (shared by every CPU, one LRU list per CPU).
#[map(name = "KA_PERSIST")]
pub static KA_PERSIST: LruHashMap<FlowKey, ConnValue> =
    LruHashMap::with_max_entries(PERSIST_TABLE_SIZE, BPF_F_NO_COMMON_LRU);

/// `ka_common::lb::NAT_MAP` (shared by every CPU, one LRU list per CPU).
#[map(name = "KA_NAT")]
pub static KA_NAT: LruHashMap<FlowKey, NatValue> =
    LruHashMap::with_max_entries(NAT_TABLE_SIZE, BPF_F_NO_COMMON_LRU);

/// `ka_common::lb::NEIGH_MAP`.
#[map(name = "KA_NEIGH")]
pub static KA_NEIGH: HashMap<AddrKey, NeighValue> = HashMap::with_max_entries(NEIGH_TABLE_SIZE, 0);

/// `ka_common::lb::NH_CACHE_MAP`.
#[map(name = "KA_NH_CACHE")]
pub static KA_NH_CACHE: PerCpuArray<NhCache> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

/// `ka_common::lb::MASTER_MAP`.
#[map(name = "KA_MASTER")]
pub static KA_MASTER: Array<u32> = Array::with_max_entries(MAX_MASTER_SLOTS, 0);

/// `ka_common::lb::GLOBALS_MAP`.
#[map(name = "KA_GLOBALS")]
pub static KA_GLOBALS: Array<Globals> = Array::with_max_entries(1, 0);

/// `ka_common::lb::LOCAL_MACS_MAP`.
#[map(name = "KA_LOCAL_MACS")]
pub static KA_LOCAL_MACS: HashMap<[u8; 8], u8> = HashMap::with_max_entries(ka_common::lb::LOCAL_MACS_MAX, 0);

/// Whether the frame's destination MAC is one of [`KA_LOCAL_MACS`].
#[inline(always)]
pub fn to_local_mac(ctx: &aya_ebpf::programs::XdpContext) -> bool {
    let Some(eth) = crate::ptr::ptr_at::<ka_common::wire::EthHdr>(ctx, 0) else { return false };
    let mut key = [0u8; 8];
    // SAFETY: bounds-checked by ptr_at.
    key[..6].copy_from_slice(unsafe { &(*eth).dst });
    // SAFETY: a lookup; the value is not read.
    unsafe { KA_LOCAL_MACS.get(&key).is_some() }
}

/// `ka_common::lb::SERVICE_STATS_MAP`.
#[map(name = "KA_SVC_STATS")]
pub static KA_SVC_STATS: PerCpuArray<PktBytes> = PerCpuArray::with_max_entries(MAX_SERVICES, 0);

/// `ka_common::lb::BACKEND_STATS_MAP`.
#[map(name = "KA_BACKEND_STATS")]
pub static KA_BACKEND_STATS: PerCpuArray<PktBytes> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);

/// `ka_common::lb::VIP_FILTER_MAP`.
#[map(name = "KA_VIP_FILTER")]
pub static KA_VIP_FILTER: Array<u64> = Array::with_max_entries(ka_common::lb::VIP_FILTER_WORDS, 0);

/// `ka_common::lb::LOCAL_VIPS_MAP`.
#[map(name = "KA_LOCAL_VIPS")]
pub static KA_LOCAL_VIPS: HashMap<AddrKey, u32> = HashMap::with_max_entries(LOCAL_VIPS_SIZE, 0);

/// `ka_common::vrrp_fast::VRRP_INSTANCES_MAP`.
#[map(name = "KA_VRRP")]
pub static KA_VRRP: HashMap<VrrpKey, VrrpInstance> =
    HashMap::with_max_entries(MAX_VRRP_INSTANCES, 0);

/// `ka_common::vrrp_fast::VRRP_SEEN_MAP`.
#[map(name = "KA_VRRP_SEEN")]
pub static KA_VRRP_SEEN: HashMap<VrrpKey, u64> = HashMap::with_max_entries(MAX_VRRP_INSTANCES, 0);

/// `ka_common::vrrp_fast::VRRP_EVENTS_MAP`.
#[map(name = "KA_VRRP_EVENTS")]
pub static KA_VRRP_EVENTS: RingBuf = RingBuf::with_byte_size(VRRP_EVENTS_BYTES, 0);

/// `ka_common::vrrp_fast::VRRP_RATE_MAP`: written by the kernel only.
#[map(name = "KA_VRRP_RATE")]
pub static KA_VRRP_RATE: LruHashMap<VrrpKey, VrrpRate> =
    LruHashMap::with_max_entries(MAX_VRRP_INSTANCES, 0);

/// `ka_common::maps::META_MAP`: written and read by userspace only (layout fingerprints of the
/// pinned maps, modes of the pinned links); the program never looks at it.
#[map(name = "KA_META")]
pub static KA_META: HashMap<[u8; ka_common::maps::META_KEY_LEN], u64> =
    HashMap::with_max_entries(ka_common::maps::META_ENTRIES, 0);

/// The global flags (0 when the map was never written).
#[inline(always)]
pub fn global_flags() -> u32 {
    KA_GLOBALS.get(0).map_or(0, |g| g.flags)
}

/// Per-CPU working memory of one packet: the parse result handed from the entry point to a
/// path, and the larger structures the paths build.
///
/// Verifier: (1) passing the `Parsed` by pointer would carry the parser's many distinct
/// register states into the callee, which the verifier then re-walks for each (the program
/// exceeded the 1M-instruction budget); read back from a map, the offsets are unknown scalars,
/// the call-site states collapse into one, and `ptr_at` re-bounds every offset. (2) The
/// combined stack of a BPF-to-BPF call chain is limited to 512 bytes; keys, service values and
/// the FIB parameter block live here instead.
pub struct Work {
    /// Parse result.
    pub pkt: crate::parse::Parsed,
    /// The packet's 5-tuple.
    pub key: ka_common::lb::FlowKey,
    /// The same 5-tuple in the IPv4 key form (IPv4 packets only).
    pub key4: ka_common::lb::FlowKey4,
    /// Persistence template / NAT reverse key.
    pub tmpl: ka_common::lb::FlowKey,
    /// The service, copied once.
    pub svc: ka_common::lb::ServiceValue,
    /// The chosen backend.
    pub backend: ka_common::lb::Backend,
    /// `bpf_fib_lookup` parameters.
    pub fib: aya_ebpf::bindings::bpf_fib_lookup,
    /// The next hop found by `forward::next_hop`.
    pub nh: crate::forward::NextHop,
    /// VRRP instance, copied once.
    pub inst: ka_common::vrrp_fast::VrrpInstance,
    /// VRRP advert source.
    pub src: A16,
    /// VRRP advert destination.
    pub dst: A16,
    /// `lblc`/`lblcr` cache key.
    pub lblc_key: ka_common::sched::LblcKey,
    /// `lblc`/`lblcr` cache value being written.
    pub lblc: ka_common::sched::LblcValue,
    /// The state of a scheduler's walk over its candidates.
    pub walk: crate::sched::Walk,
    /// A word values pass through to become unknown to the verifier (`conn::launder`).
    pub launder: u32,
    /// This CPU's flood-mode window (`conn::flood`); kept from packet to packet.
    pub flood: ka_common::sched::FloodWindow,
}

/// A 16-byte address, 4-aligned so it is written a word at a time ([`crate::mem`]).
#[repr(C, align(4))]
#[derive(Clone, Copy)]
pub struct A16(pub [u8; 16]);

/// `KA_SCRATCH`: one [`Work`] per CPU.
#[map(name = "KA_SCRATCH")]
pub static KA_SCRATCH: PerCpuArray<Work> = PerCpuArray::with_max_entries(1, 0);

/// Stores the parse result for the path about to run.
#[inline(always)]
pub fn stash(pkt: &crate::parse::Parsed) -> bool {
    match KA_SCRATCH.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, no concurrent user on this CPU during the program run.
        Some(p) => {
            unsafe { (*p).pkt = *pkt };
            true
        }
        None => false,
    }
}

/// This CPU's [`Work`], holding the parse result stored by [`stash`].
#[inline(always)]
pub fn work() -> Option<&'static mut Work> {
    // SAFETY: per-CPU slot used by one program run at a time; every field is plain data and
    // `pkt` only ever holds values written by `stash`.
    KA_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}
