//! Map names and sizes, shared by the kernel and userspace side.

/// Name of the per-CPU counters array of `ka_xdp` (see [`crate::stats::Counter`]).
pub const STATS_MAP: &str = "KA_STATS";

/// Name of the XDP program that every interface of a director gets.
pub const XDP_PROGRAM: &str = "ka_xdp";

/// Name of the per-CPU working memory of one packet of the XDP programs (kernel-internal
/// layout, never pinned).
pub const SCRATCH_MAP: &str = "KA_SCRATCH";

/// Whether two names are the same, at compile time: the kernel side names its maps and
/// programs by their Rust identifiers and checks each against the name defined here.
pub const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Name of the bpffs directory under which every instance pins its maps:
/// `/sys/fs/bpf/ka/<instance>/`.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf/ka";

/// Directory that holds the control socket of every instance: `/run/ka/<instance>.sock`.
pub const RUN_DIR: &str = "/run/ka";

/// Name of the metadata map pinned next to the others: the layout fingerprint of every pinned
/// map (key `layout:NAME`, see [`layout_hash`]) and the XDP mode of every pinned link (key
/// `xdp_mode:IFACE`, [`XDP_MODE_NATIVE`] or [`XDP_MODE_GENERIC`]). A starting daemon reads it
/// before it adopts the pins. Its own layout must never change.
pub const META_MAP: &str = "KA_META";

/// Entries of [`META_MAP`].
pub const META_ENTRIES: u32 = 128;

/// Key length of [`META_MAP`]: `kind:name`, NUL-padded.
pub const META_KEY_LEN: usize = 32;

/// [`META_MAP`] value of an `xdp_mode:IFACE` entry: native (driver) mode.
pub const XDP_MODE_NATIVE: u64 = 1;

/// [`META_MAP`] value of an `xdp_mode:IFACE` entry: generic (skb) mode.
pub const XDP_MODE_GENERIC: u64 = 2;

/// The maps whose pins carry state from one `ka` process to the next (pinned under the
/// instance's directory, adopted on start). Scratch memory, the VRRP event ring and the
/// benchmark maps are per process and never pinned.
pub const PINNED_MAPS: &[&str] = &[
    META_MAP,
    STATS_MAP,
    crate::stats::STATS_BUNDLES_MAP,
    crate::lb::SERVICES4_MAP,
    crate::lb::SERVICES6_MAP,
    crate::lb::BACKENDS_MAP,
    crate::lb::TABLES_MAP,
    crate::lb::RR_MAP,
    crate::lb::CONN4_MAP,
    crate::lb::CONN6_MAP,
    crate::lb::PERSIST_MAP,
    crate::lb::NAT_MAP,
    crate::lb::NEIGH_MAP,
    crate::lb::NH_CACHE_MAP,
    crate::lb::MASTER_MAP,
    crate::lb::GLOBALS_MAP,
    crate::lb::SERVICE_STATS_MAP,
    crate::lb::BACKEND_STATS_MAP,
    crate::lb::LOCAL_VIPS_MAP,
    crate::lb::VIP_FILTER_MAP,
    crate::sched::DESTS_MAP,
    crate::sched::BACKEND_CONNS_MAP,
    crate::sched::CONN_TIMEOUTS_MAP,
    crate::sched::LBLC_MAP,
    crate::vrrp_fast::VRRP_INSTANCES_MAP,
    crate::vrrp_fast::VRRP_SEEN_MAP,
];

/// The pinned maps only userspace writes (the kernel only looks them up): the configuration
/// tables. When one is replaced at start (its layout changed), its entries are migrated
/// before the new run writes its first tables, so the map writer reads back what the
/// previous run wrote; the maps the kernel writes (connections, counters...) are migrated
/// last, once the new program runs.
pub const USERSPACE_MAPS: &[&str] = &[
    crate::lb::SERVICES4_MAP,
    crate::lb::SERVICES6_MAP,
    crate::lb::BACKENDS_MAP,
    crate::lb::TABLES_MAP,
    crate::lb::NEIGH_MAP,
    crate::lb::MASTER_MAP,
    crate::lb::GLOBALS_MAP,
    crate::lb::LOCAL_VIPS_MAP,
    crate::lb::VIP_FILTER_MAP,
    crate::sched::DESTS_MAP,
    crate::sched::CONN_TIMEOUTS_MAP,
    crate::vrrp_fast::VRRP_INSTANCES_MAP,
];

/// Layout revisions beyond what the kernel sees: bump a map's entry when the meaning or order
/// of its key/value fields changes while their sizes stay the same (a size, type or
/// max-entries change is noticed without it). A map not listed is at revision 0.
pub const LAYOUT_REVISIONS: &[(&str, u32)] = &[
    // 1: the VRRP instance's padding became its `seen_slot` (issue 15): an earlier ka's
    // entries would all name slot 0, so they are rewritten from the configuration.
    (crate::vrrp_fast::VRRP_INSTANCES_MAP, 1),
    // 1: the last-seen stamps became tick counts (`bpf_jiffies64`), were nanoseconds of the
    // coarse clock: an earlier ka's stamps would read as ticks from long ago.
    (crate::vrrp_fast::VRRP_SEEN_MAP, 1),
    // 1: entries are placed and checked by the connection-table hash (`lb::conn_hash4`), were
    // by the scheduler's (`lb::flow_hash4`): an earlier ka's table is rehashed at upgrade
    // (`ka::lb::rehash`), so its connections keep their real servers.
    (crate::lb::CONN4_MAP, 1),
    (crate::lb::CONN6_MAP, 1),
];

/// The layout revision of `map` (see [`LAYOUT_REVISIONS`]).
pub fn layout_revision(map: &str) -> u32 {
    LAYOUT_REVISIONS.iter().find(|(n, _)| *n == map).map_or(0, |(_, r)| *r)
}

/// A map's definition as the kernel sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapDef {
    /// `BPF_MAP_TYPE_*`.
    pub map_type: u32,
    /// Key size, bytes.
    pub key_size: u32,
    /// Value size, bytes.
    pub value_size: u32,
    /// Maximum number of entries.
    pub max_entries: u32,
    /// `BPF_F_*` creation flags.
    pub flags: u32,
}

/// The layout fingerprint of a map: FNV-1a over its name, its kernel definition and its
/// [`layout_revision`]. Two builds whose fingerprints match can share the pinned map.
pub fn layout_hash(name: &str, def: &MapDef) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    };
    for b in name.bytes() {
        eat(b);
    }
    eat(0);
    for v in [def.map_type, def.key_size, def.value_size, def.max_entries, def.flags, layout_revision(name)] {
        for b in v.to_le_bytes() {
            eat(b);
        }
    }
    h
}

/// The [`META_MAP`] key `kind:name`, NUL-padded (names longer than the key are cut).
pub fn meta_key(kind: &str, name: &str) -> [u8; META_KEY_LEN] {
    let mut k = [0u8; META_KEY_LEN];
    for (dst, src) in k.iter_mut().zip(kind.bytes().chain(core::iter::once(b':')).chain(name.bytes())) {
        *dst = src;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEF: MapDef = MapDef { map_type: 2, key_size: 4, value_size: 64, max_entries: 1024, flags: 0 };

    /// Every kernel-visible property and the name change the fingerprint.
    #[test]
    fn layout_hash_sees_every_property() {
        let base = layout_hash("KA_X", &DEF);
        assert_eq!(base, layout_hash("KA_X", &DEF));
        assert_ne!(base, layout_hash("KA_Y", &DEF));
        assert_ne!(base, layout_hash("KA_X", &MapDef { value_size: 65, ..DEF }));
        assert_ne!(base, layout_hash("KA_X", &MapDef { key_size: 8, ..DEF }));
        assert_ne!(base, layout_hash("KA_X", &MapDef { max_entries: 2048, ..DEF }));
        assert_ne!(base, layout_hash("KA_X", &MapDef { map_type: 1, ..DEF }));
        assert_ne!(base, layout_hash("KA_X", &MapDef { flags: 2, ..DEF }));
    }

    #[test]
    fn meta_keys_are_padded_and_cut() {
        let k = meta_key("layout", "KA_CONNS4");
        assert_eq!(&k[..16], b"layout:KA_CONNS4");
        assert!(k[16..].iter().all(|b| *b == 0));
        let long = meta_key("xdp_mode", "a-very-long-interface-name-here");
        assert_eq!(long.len(), META_KEY_LEN);
        assert_eq!(&long[..9], b"xdp_mode:");
    }

    #[test]
    fn names_compare_at_compile_time() {
        const { assert!(same_name("KA_STATS", STATS_MAP)) };
        assert!(!same_name("KA_STATS", "KA_STATZ"));
        assert!(!same_name("KA_STATS", "KA_STATS2"));
    }

    #[test]
    fn userspace_maps_are_pinned() {
        for m in USERSPACE_MAPS {
            assert!(PINNED_MAPS.contains(m), "{m} is not pinned");
        }
    }

    #[test]
    fn pinned_maps_are_unique() {
        for (i, a) in PINNED_MAPS.iter().enumerate() {
            assert!(!PINNED_MAPS[i + 1..].contains(a), "{a} listed twice");
        }
    }
}
