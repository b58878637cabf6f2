//! The XDP fuzzer: random and mutated frames, seeded from the fixture frames, run through
//! BPF_PROG_TEST_RUN against `ka_xdp` (and `ka_decap`) loaded once with its maps populated
//! as the fixtures populate them (every kind of service, VRRP fast-path instances, local VIPs),
//! in a namespace whose interfaces, routes and neighbours give `bpf_fib_lookup` real answers.
//!
//! BPF programs cannot run inside libFuzzer's process loop, so this is a mutation loop of its
//! own: counter signatures (which counters one packet moved, with the verdict) stand in for
//! coverage, and an input that gives a new signature joins the corpus.
//!
//! Invariants, checked on every packet:
//! - the verdict is PASS, DROP, TX or REDIRECT, never ABORTED, and exactly one verdict counter
//!   moves, by one, the one of that verdict;
//! - exactly one parse-class counter moves (IPv4, IPv6, other EtherType or one parse error),
//!   and for IP exactly one transport counter; `vlan` moves iff the frame is tagged;
//! - a TCP, UDP, ICMP or VRRP packet (and every drop) moves a counter naming why;
//! - a passed frame is unchanged (`ka_decap`: unless it was decapsulated, then it is the inner
//!   packet);
//! - a forwarded frame (TX, REDIRECT) is well formed: untagged IPv4/IPv6 whose lengths agree
//!   with the frame and whose transport header lies inside the IP packet; every checksum that
//!   was valid on input is valid on output (IPv4 header, TCP/UDP/ICMP, the header an ICMP
//!   error quotes); a tunnel header and a generated ICMP error are always valid; the MACs are
//!   those of an interface and a known next hop, TX leaves by the ingress interface, REDIRECT
//!   by another; direct routing changes nothing but the MACs;
//! - a forwarded packet of a new flow (not a SYN) sent again is forwarded identically (the
//!   state it left is read back consistently).
//!
//! And every few seconds on the maps: the maps only userspace writes are byte for byte what it
//! wrote; the per-service and per-backend packet counters add up to the forwarded packets;
//! every NAT and persistence entry names a configured service or backend; every last-seen
//! entry an instance; every VRRP and sync event a configured instance or backend.
#![allow(dead_code, reason = "the test binary and the campaign binary each use a different subset")]

use std::{
    collections::{HashMap, HashSet},
    hash::{Hash, Hasher},
    io,
    net::IpAddr,
    os::fd::{AsFd as _, AsRawFd as _, RawFd},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use aya::{
    maps::Map,
    programs::{TestRun, TestRunOptions, Xdp},
    Ebpf,
};
use ka::lb::{
    sync::install::{set_master_flag, SyncRing},
    vrrp_fast::{self, EventReader, FastParams, KnownMaster},
    writer::MapWriter,
    BackendSpec, DesiredState, L4Proto, Member, Method, Neighbour, Persistence, Scheduler, ServiceOptions, ServiceSpec,
    TunnelSource,
};
use ka_common::{
    lb::{
        AddrKey, ConnValue, FlowKey, NatValue, PktBytes, BACKENDS_MAP, BACKEND_STATS_MAP, DECAP_PROGRAM, GLOBALS_MAP, LOCAL_VIPS_MAP,
        MASTER_MAP, NAT_MAP, NEIGH_MAP, PERSIST_MAP, SERVICES4_MAP, SERVICES6_MAP, SERVICE_STATS_MAP, TABLES_MAP,
    },
    maps::{STATS_MAP, XDP_PROGRAM},
    stats::Counter,
    vrrp::Family,
    vrrp_fast::{VrrpInstance, VrrpKey, VRRP_INSTANCES_MAP, VRRP_SEEN_MAP},
};
use ka_tests::netns::Netns;

use super::frames;

const XDP_ABORTED: u32 = 0;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

// ---------------------------------------------------------------------------------------------
// Inputs.

/// One packet of an input: `sel` picks the interface it arrives on (bits 0-1: lb0, lb1, lo,
/// lb0) and the program (bits 2-3 = 3: `ka_decap`, else `ka_xdp`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    /// Interface and program.
    pub sel: u8,
    /// The Ethernet frame.
    pub frame: Vec<u8>,
}

/// Most packets in one input (they run in order on the same maps).
pub const MAX_RECORDS: usize = 4;
/// Smallest frame BPF_PROG_TEST_RUN accepts for XDP (an Ethernet header).
pub const MIN_FRAME: usize = 14;
/// Largest frame an input carries (BPF_PROG_TEST_RUN takes up to a page minus head- and
/// tailroom; 3000 leaves room for the 40 bytes of an IP6IP6 header).
pub const MAX_FRAME: usize = 3000;

impl Record {
    /// Interface index in [`Lab::ifindex`] order (lb0, lb1, lo).
    pub fn iface(&self) -> usize {
        match self.sel & 3 {
            1 => 1,
            2 => 2,
            _ => 0,
        }
    }

    /// Whether it runs through `ka_decap`.
    pub fn decap(&self) -> bool {
        (self.sel >> 2) & 3 == 3
    }
}

/// An input as bytes: for each record, `sel`, the frame length (u16, big endian), the frame.
pub fn encode(recs: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in recs {
        out.push(r.sel);
        out.extend_from_slice(&(r.frame.len() as u16).to_be_bytes());
        out.extend_from_slice(&r.frame);
    }
    out
}

/// The records of `bytes` ([`encode`]'s format), lenient: a short last frame is taken as it
/// is, frames are clamped to [`MIN_FRAME`]..=[`MAX_FRAME`] bytes (zero-padded), at most
/// [`MAX_RECORDS`] records.
pub fn decode(bytes: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while out.len() < MAX_RECORDS && rest.len() >= 3 {
        let sel = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        let body = &rest[3..];
        let take = len.min(body.len());
        let mut frame = body[..take].to_vec();
        rest = &body[take..];
        frame.truncate(MAX_FRAME);
        if frame.len() < MIN_FRAME {
            frame.resize(MIN_FRAME, 0);
        }
        out.push(Record { sel, frame });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The lab and the state of the maps.

/// lb0's MAC.
pub const LB0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
/// lb1's MAC.
pub const LB1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];
const RS1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x10, 0x10];
const RS2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x20, 0x20];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xfe, 0xfe];
const NEIGH_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x99, 0x99];
/// Every next hop the lab knows (a forwarded frame goes to one of these).
const NEXT_HOP_MACS: [[u8; 6]; 4] = [RS1_MAC, RS2_MAC, GW_MAC, NEIGH_MAC];

/// RS1, behind lb0 (forwarding to it is `XDP_TX` from lb0).
pub const RS1: &str = "198.18.1.10";
/// RS2, behind lb1 (forwarding to it is `XDP_REDIRECT` from lb0).
pub const RS2: &str = "198.18.2.20";
/// Behind RS2 on a route whose MTU is locked at 1400.
const RS3: &str = "198.18.3.30";
/// Behind RS2 on a route whose MTU is locked at 400.
const RS_SMALL: &str = "198.18.4.40";
/// No route: its next hop comes from the neighbour map.
const RS_NEIGH: &str = "198.18.9.10";
const RS1_6: &str = "fd00:198:18:1::10";
const RS2_6: &str = "fd00:198:18:2::20";
/// Clients (behind the default gateway of lb0).
pub const CLIENTS: [&str; 4] = ["198.18.0.1", "198.19.200.1", "fd00:198:18:c::1", "fd00:198:19:200::1"];
/// The VRRP peers of the fast-path instances.
const VRRP_MASTER4: &str = "198.18.0.2";
const VRRP_MASTER6: &str = "fd00:198:18:1::2";
/// Mastership slot of the gated service, flipped during the campaign.
const GATED_SLOT: u32 = 5;

/// The fuzzer's namespace: lb0 (198.18.1.1/24, fd00:198:18:1::1/64) with RS1 and the default
/// gateway .254 / ::fe; lb1 (198.18.2.1/24, fd00:198:18:2::1/64) with RS2, and behind RS2
/// 198.18.3.0/24 and 198.18.4.0/24 on routes locked at MTU 1400 and 400; 198.18.9.0/24
/// unreachable (the neighbour map answers for RS_NEIGH). Forwarding on, permanent neighbours.
pub fn lab() -> Netns {
    let ns = Netns::new("xf").expect("netns");
    let cmds: &[&str] = &[
        "ip link add lb0 address 02:00:00:00:01:01 type veth peer name lb0p",
        "ip link add lb1 address 02:00:00:00:02:01 type veth peer name lb1p",
        "ip link set lo up",
        "ip link set lb0 up",
        "ip link set lb0p up",
        "ip link set lb1 up",
        "ip link set lb1p up",
        "ip addr add 198.18.1.1/24 dev lb0",
        "ip addr add 198.18.2.1/24 dev lb1",
        "ip addr add fd00:198:18:1::1/64 dev lb0 nodad",
        "ip addr add fd00:198:18:2::1/64 dev lb1 nodad",
        "sysctl -qw net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1",
        "ip neigh replace 198.18.1.10 lladdr 02:00:00:00:10:10 dev lb0 nud permanent",
        "ip neigh replace 198.18.1.254 lladdr 02:00:00:00:fe:fe dev lb0 nud permanent",
        "ip neigh replace 198.18.2.20 lladdr 02:00:00:00:20:20 dev lb1 nud permanent",
        "ip neigh replace fd00:198:18:1::10 lladdr 02:00:00:00:10:10 dev lb0 nud permanent",
        "ip neigh replace fd00:198:18:1::fe lladdr 02:00:00:00:fe:fe dev lb0 nud permanent",
        "ip neigh replace fd00:198:18:2::20 lladdr 02:00:00:00:20:20 dev lb1 nud permanent",
        "ip route add default via 198.18.1.254 dev lb0",
        "ip -6 route add default via fd00:198:18:1::fe dev lb0",
        "ip route add 198.18.3.0/24 via 198.18.2.20 dev lb1 mtu lock 1400",
        "ip route add 198.18.4.0/24 via 198.18.2.20 dev lb1 mtu lock 400",
        "ip route add unreachable 198.18.9.0/24",
    ];
    for c in cmds {
        let argv: Vec<&str> = c.split(' ').collect();
        ns.run(&argv).unwrap_or_else(|e| panic!("{c}: {e:#}"));
    }
    ns
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("address {s}: {e}"))
}

/// A healthy real server of weight 1 (the one place a `BackendSpec` is built).
fn rs(addr: &str, port: u16, method: Method) -> BackendSpec {
    BackendSpec { addr: ip(addr), port, weight: 1, method, healthy: true, uthreshold: 0, lthreshold: 0 }
}

fn svc(vip: &str, port: u16, proto: L4Proto, scheduler: Scheduler, backends: Vec<BackendSpec>) -> ServiceSpec {
    ServiceSpec { vip: ip(vip), port, proto, scheduler, persistence: None, master_slot: None, backends, options: ServiceOptions::default() }
}

fn persistent(prefix_len: u8) -> Option<Persistence> {
    Some(Persistence { timeout: Duration::from_secs(60), prefix_len })
}

fn member(vip: &str, port: u16) -> Member {
    Member { vip: ip(vip), port, master_slot: None }
}

/// The services: those of `xdp_lb` and `xdp_icmp` (DR, TUN, NAT for IPv4 and IPv6, TCP and
/// UDP, a gated one, next hops on routes with small MTUs and from the neighbour map) on
/// 198.18.100.0/24 and fd00:198:18:100::/64, and those of `xdp_services` (port 0, groups,
/// persistence per key and service-wide, round robin, one-packet scheduling, source hashing
/// with and without fallback over an unhealthy server, mixed methods, NAT to port 0) on
/// 198.19.0.0/24.
pub fn desired(lb1_ifindex: u32) -> DesiredState {
    use L4Proto::{Tcp, Udp};
    use Method::{Dr, Nat, Tun};
    use Scheduler::{Maglev, RoundRobin, SourceHash};
    let mut gated = svc("198.18.100.9", 80, Tcp, Maglev, vec![rs(RS2, 80, Dr)]);
    gated.master_slot = Some(GATED_SLOT);
    let mut any_port = svc("198.19.0.1", 0, Tcp, Maglev, vec![rs(RS1, 0, Dr)]);
    any_port.persistence = persistent(32);
    let mut group = svc("198.19.0.1", 80, Tcp, Maglev, vec![rs(RS1, 80, Dr), rs(RS2, 80, Dr)]);
    group.persistence = persistent(24);
    group.options.also = vec![member("198.19.0.2", 80), member("198.19.0.3", 443)];
    let mut spread = svc("198.19.0.2", 0, Tcp, Maglev, vec![rs(RS1, 0, Dr), rs(RS2, 0, Dr)]);
    spread.persistence = persistent(32);
    // Maglev, so that a one-packet flow sent again goes to the same server.
    let mut ops = svc("198.19.0.1", 53, Udp, Maglev, vec![rs(RS1, 53, Dr), rs(RS2, 53, Dr)]);
    ops.options.one_packet = true;
    let mut sh_fallback = svc("198.19.0.4", 80, Tcp, SourceHash, vec![rs(RS1, 80, Dr), rs(RS2, 80, Dr)]);
    sh_fallback.backends[0].healthy = false;
    sh_fallback.options.fallback = true;
    let mut sh = svc("198.19.0.5", 80, Tcp, SourceHash, vec![rs(RS1, 80, Dr), rs(RS2, 80, Dr)]);
    sh.backends[0].healthy = false;
    let mut nat_any = svc("198.19.0.7", 0, Tcp, Maglev, vec![rs(RS2, 0, Nat)]);
    nat_any.persistence = persistent(32);
    let mut wide = svc("198.19.0.8", 80, Tcp, Maglev, vec![rs(RS1, 80, Dr), rs(RS2, 80, Dr)]);
    wide.persistence = persistent(32);
    wide.options.persist_service_wide = true;
    wide.options.also = vec![member("198.19.0.9", 443)];
    let mut any6 = svc("fd00:198:19::1", 0, Tcp, Maglev, vec![rs(RS1_6, 0, Dr)]);
    any6.persistence = persistent(128);
    DesiredState {
        services: vec![
            svc("198.18.100.1", 80, Tcp, Maglev, vec![rs(RS1, 80, Dr)]),
            svc("198.18.100.2", 80, Tcp, RoundRobin, vec![rs(RS2, 80, Tun)]),
            svc("198.18.100.3", 53, Udp, SourceHash, vec![rs(RS2, 5353, Nat)]),
            svc("198.18.100.4", 80, Tcp, Maglev, vec![rs(RS2, 8080, Nat)]),
            svc("198.18.100.5", 80, Tcp, Maglev, vec![rs(RS3, 80, Dr)]),
            svc("198.18.100.6", 80, Tcp, Maglev, vec![rs(RS_SMALL, 80, Dr)]),
            gated,
            svc("198.18.100.10", 80, Tcp, Maglev, vec![rs(RS_NEIGH, 80, Dr)]),
            svc("fd00:198:18:100::1", 80, Tcp, Maglev, vec![rs(RS1_6, 80, Dr)]),
            svc("fd00:198:18:100::2", 53, Udp, Maglev, vec![rs(RS2_6, 53, Tun)]),
            svc("fd00:198:18:100::3", 443, Tcp, Maglev, vec![rs(RS2_6, 8443, Nat)]),
            any_port,
            svc("198.19.0.1", 443, Tcp, Maglev, vec![rs(RS2, 443, Dr)]),
            group,
            spread,
            ops,
            svc("198.19.0.4", 53, Udp, RoundRobin, vec![rs(RS1, 53, Dr), rs(RS2, 53, Dr)]),
            sh_fallback,
            sh,
            svc("198.19.0.6", 80, Tcp, RoundRobin, vec![rs(RS1, 80, Dr), rs(RS2, 8080, Nat), rs(RS2, 80, Tun)]),
            nat_any,
            wide,
            any6,
        ],
        tunnel_src_v4: Some(TunnelSource { addr: ip("198.18.2.1"), host_bits: 0 }),
        tunnel_src_v6: Some(TunnelSource { addr: ip("fd00:198:18:2::1"), host_bits: 4 }),
        neighbours: vec![Neighbour { addr: ip(RS_NEIGH), ifindex: lb1_ifindex, smac: LB1_MAC, dmac: NEIGH_MAC }],
    }
}

/// The VIPs `ka_decap` decapsulates for (the TUN services').
const LOCAL_VIPS: [&str; 3] = ["198.18.100.2", "fd00:198:18:100::2", "198.19.0.6"];

/// Fast-path parameters of a VRRP instance (the one place `FastParams` is built).
fn fast_params(version: u8, master: bool, local: &str, peer: &str, auth: Option<&[u8]>) -> FastParams {
    FastParams {
        version,
        check_ttl: true,
        drop_invalid: true,
        drop_steady: true,
        master,
        auth_pass: auth.map(<[u8]>::to_vec),
        checksum: Default::default(),
        group_v4: None,
        adver_int: Duration::from_secs(1),
        local_priority: 100,
        local_addr: ip(local),
        known_master: (!master).then(|| KnownMaster { addr: ip(peer), priority: 150, adver_int: Duration::from_secs(1) }),
    }
}

/// The VRRP fast-path instances: (interface in lab order, VRID, family, parameters). On `lo`
/// those of `xdp_vrrp` (VRID 51 v3 BACKUP of 198.18.0.2) and a v2 one with PASS
/// authentication; on lb0 a MASTER and an IPv6 BACKUP.
fn vrrp_instances() -> Vec<(usize, u8, Family, FastParams)> {
    vec![
        (2, 51, Family::V4, fast_params(3, false, "198.18.0.1", VRRP_MASTER4, None)),
        (2, 52, Family::V4, fast_params(2, false, "198.18.0.1", VRRP_MASTER4, Some(b"secret"))),
        (2, 53, Family::V6, fast_params(3, true, "fd00:198:18:1::1", VRRP_MASTER6, None)),
        (0, 51, Family::V4, fast_params(3, true, "198.18.1.1", VRRP_MASTER4, None)),
        (0, 60, Family::V6, fast_params(3, false, "fd00:198:18:1::1", VRRP_MASTER6, None)),
    ]
}

// ---------------------------------------------------------------------------------------------
// Raw map reads (BPF_MAP_LOOKUP_BATCH: one system call for many entries).

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// A map's file descriptor and sizes.
#[derive(Clone, Copy, Debug)]
struct RawMap {
    fd: RawFd,
    key_size: usize,
    /// Bytes per entry in a batch (per-CPU maps: one 8-aligned value per possible CPU).
    value_stride: usize,
}

fn possible_cpus() -> usize {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    s.trim()
        .split(',')
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap_or(0).saturating_sub(a.parse().unwrap_or(0)) + 1,
            None => usize::from(!r.is_empty()),
        })
        .sum::<usize>()
        .max(1)
}

fn raw_map(ebpf: &Ebpf, name: &str) -> RawMap {
    let map = ebpf.map(name).unwrap_or_else(|| panic!("map {name} in the object"));
    let (data, percpu) = match map {
        Map::Array(d) | Map::HashMap(d) | Map::LruHashMap(d) => (d, false),
        Map::PerCpuArray(d) | Map::PerCpuHashMap(d) => (d, true),
        _ => panic!("map {name}: unexpected type"),
    };
    let info = data.info().unwrap_or_else(|e| panic!("map {name}: {e}"));
    let vs = info.value_size() as usize;
    RawMap {
        fd: data.fd().as_fd().as_raw_fd(),
        key_size: info.key_size() as usize,
        value_stride: if percpu { vs.div_ceil(8) * 8 * possible_cpus() } else { vs },
    }
}

/// Calls `f(keys, values, n)` for every batch of at most `chunk` entries of `m`, in the
/// kernel's order.
fn for_each_batch(m: RawMap, chunk: usize, mut f: impl FnMut(&[u8], &[u8], usize)) -> io::Result<()> {
    let mut chunk = chunk.max(1);
    let mut in_batch = [0u8; 64];
    let mut out_batch = [0u8; 64];
    let mut first = true;
    loop {
        let mut keys = vec![0u8; chunk * m.key_size];
        let mut vals = vec![0u8; chunk * m.value_stride];
        let mut attr = [0u8; 56];
        let in_ptr = if first { 0u64 } else { in_batch.as_ptr() as u64 };
        attr[0..8].copy_from_slice(&in_ptr.to_ne_bytes());
        attr[8..16].copy_from_slice(&(out_batch.as_mut_ptr() as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(keys.as_mut_ptr() as u64).to_ne_bytes());
        attr[24..32].copy_from_slice(&(vals.as_mut_ptr() as u64).to_ne_bytes());
        attr[32..36].copy_from_slice(&(chunk as u32).to_ne_bytes());
        attr[36..40].copy_from_slice(&(m.fd as u32).to_ne_bytes());
        // SAFETY: bpf(2) with a batch attribute whose pointers stay valid for the call.
        let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_LOOKUP_BATCH, attr.as_mut_ptr(), attr.len() as u32) };
        let err = (rc < 0).then(io::Error::last_os_error);
        let n = u32::from_ne_bytes([attr[32], attr[33], attr[34], attr[35]]) as usize;
        match err {
            Some(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                // A hash bucket larger than the batch: retry bigger.
                chunk *= 4;
                continue;
            }
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                f(&keys, &vals, n);
                return Ok(());
            }
            Some(e) => return Err(e),
            None => f(&keys, &vals, n),
        }
        in_batch = out_batch;
        first = false;
    }
}

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;

/// The value of key `key` of array map `m` (4-byte values).
fn array_u32(m: RawMap, key: u32) -> io::Result<u32> {
    let mut value = 0u32;
    let mut attr = [0u8; 32];
    attr[0..4].copy_from_slice(&(m.fd as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(std::ptr::from_ref(&key) as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(std::ptr::from_mut(&mut value) as u64).to_ne_bytes());
    // SAFETY: bpf(2) with a lookup attribute whose pointers stay valid for the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_LOOKUP_ELEM, attr.as_mut_ptr(), attr.len() as u32) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// A hash of every entry of `m`.
fn map_hash(m: RawMap) -> io::Result<u64> {
    let mut h = std::hash::DefaultHasher::new();
    for_each_batch(m, 4096, |k, v, n| {
        k[..n * m.key_size].hash(&mut h);
        v[..n * m.value_stride].hash(&mut h);
    })?;
    Ok(h.finish())
}

/// Every entry of `m` as (key, value) byte vectors (per-CPU values: every CPU's).
fn map_entries(m: RawMap) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for_each_batch(m, 4096, |k, v, n| {
        for i in 0..n {
            out.push((k[i * m.key_size..(i + 1) * m.key_size].to_vec(), v[i * m.value_stride..(i + 1) * m.value_stride].to_vec()));
        }
    })?;
    Ok(out)
}

/// Sum over entries and CPUs of the first u64 of each per-CPU value (the `packets` of a
/// [`PktBytes`] array).
fn sum_packets(m: RawMap) -> io::Result<u64> {
    let per = std::mem::size_of::<PktBytes>().div_ceil(8) * 8;
    let mut total = 0u64;
    for_each_batch(m, 4096, |_, v, n| {
        for chunk in v[..n * m.value_stride].chunks_exact(per) {
            let p: PktBytes = bytemuck::pod_read_unaligned(&chunk[..std::mem::size_of::<PktBytes>()]);
            total = total.wrapping_add(p.packets);
        }
    })?;
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// The harness: one load of the object, its maps populated, and the invariants.

/// The maps only userspace writes: the datapath must leave them byte for byte as written
/// (`KA_TABLES`, 8M entries, is sampled: see [`Harness::tables_hash`]).
const USERSPACE_MAPS: [&str; 8] =
    [SERVICES4_MAP, SERVICES6_MAP, BACKENDS_MAP, MASTER_MAP, GLOBALS_MAP, NEIGH_MAP, LOCAL_VIPS_MAP, VRRP_INSTANCES_MAP];
/// Slots of each service's table in the snapshot (all of a shorter table).
const TABLE_SAMPLES: u32 = 256;

/// What one packet did.
#[derive(Clone, Debug)]
pub struct XdpRun {
    /// The verdict.
    pub action: u32,
    /// The frame afterwards.
    pub out: Vec<u8>,
    /// How much each counter moved (indexed by `Counter::index`).
    pub delta: Vec<u64>,
}

impl XdpRun {
    fn moved(&self, c: Counter) -> u64 {
        self.delta.get(c.index() as usize).copied().unwrap_or(0)
    }
}

/// Counter groups the invariants speak of.
const VERDICTS: [(Counter, u32); 5] = [
    (Counter::VerdictAborted, XDP_ABORTED),
    (Counter::VerdictDrop, XDP_DROP),
    (Counter::VerdictPass, XDP_PASS),
    (Counter::VerdictTx, XDP_TX),
    (Counter::VerdictRedirect, XDP_REDIRECT),
];
const CLASSES: [Counter; 10] = [
    Counter::Ipv4,
    Counter::Ipv6,
    Counter::OtherL3,
    Counter::ErrTruncatedEth,
    Counter::ErrBadVlan,
    Counter::ErrTruncatedIpv4,
    Counter::ErrBadIpv4,
    Counter::ErrTruncatedIpv6,
    Counter::ErrBadIpv6,
    Counter::ErrTruncatedL4,
];
const TRANSPORTS: [Counter; 6] = [Counter::Tcp, Counter::Udp, Counter::Icmp, Counter::Vrrp, Counter::Fragment, Counter::OtherL4];

/// Whether `c` says why a packet got its verdict (not a verdict, parse class or transport).
fn is_reason(c: Counter) -> bool {
    !VERDICTS.iter().any(|(v, _)| *v == c) && !CLASSES.contains(&c) && !TRANSPORTS.contains(&c) && c != Counter::Vlan
}

/// The lab interfaces' indexes and MACs, in record order (lb0, lb1, lo).
pub struct Ifaces {
    /// Interface indexes.
    pub index: [u32; 3],
    /// MACs.
    pub mac: [[u8; 6]; 3],
}

/// The loaded programs, their maps, what was written to them and the campaign's running
/// totals.
pub struct Harness {
    ebpf: Ebpf,
    ifaces: Ifaces,
    desired: DesiredState,
    stats: RawMap,
    /// `KA_STATS_BUNDLES`: counts userspace adds to several counters each.
    bundles: RawMap,
    last: Vec<u64>,
    events: EventReader,
    sync: SyncRing,
    snapshot: Vec<(&'static str, u64)>,
    /// Forwarded packets, generated ICMP errors and NAT replies so far.
    forwarded: u64,
    too_big: u64,
    nat_replies: u64,
    toggles: u64,
    vrrp_keys: HashSet<Vec<u8>>,
    service_ids: HashSet<u32>,
    backend_ids: HashSet<u32>,
    vips: HashSet<[u8; 16]>,
    nat_backends: HashSet<[u8; 16]>,
}

fn addr16(a: IpAddr) -> [u8; 16] {
    ka::lb::addr16(a).0
}

impl Harness {
    /// Loads `ka_xdp` and `ka_decap` (fresh maps), and populates the maps. Must run inside the
    /// lab's namespace, on the thread that runs the packets (pinned to CPU 0).
    pub fn new() -> Harness {
        ka_tests::require_root();
        let mut loaded = crate::common::Loaded::new();
        loaded.load_also(DECAP_PROGRAM);
        let mut ebpf = loaded.ebpf;
        let idx = |n: &str| nix::net::if_::if_nametoindex(n).unwrap_or_else(|e| panic!("ifindex of {n}: {e}"));
        let ifaces = Ifaces { index: [idx("lb0"), idx("lb1"), idx("lo")], mac: [LB0_MAC, LB1_MAC, [0; 6]] };
        let desired = desired(ifaces.index[1]);
        let mut writer = MapWriter::new();
        writer.apply(&mut ebpf, &desired).expect("writing the services");
        MapWriter::set_master(&mut ebpf, GATED_SLOT, true).expect("mastership");
        vrrp_fast::set_enabled(&mut ebpf, true, false).expect("VRRP fast path");
        for (iface, vrid, family, p) in vrrp_instances() {
            vrrp_fast::configure(&mut ebpf, ifaces.index[iface], vrid, family, &p).expect("VRRP instance");
        }
        {
            let map = ebpf.map_mut(LOCAL_VIPS_MAP).expect("local VIPs map");
            let mut m: aya::maps::HashMap<_, AddrKey, u32> = aya::maps::HashMap::try_from(map).expect("hash map");
            for v in LOCAL_VIPS {
                let (addr, family) = ka::lb::addr16(ip(v));
                m.insert(AddrKey { addr, family, _pad: [0; 3] }, 1, 0).expect("local VIP");
            }
        }
        set_master_flag(&mut ebpf, true).expect("sync master flag");
        let events = EventReader::new(&mut ebpf).expect("VRRP ring");
        let sync = SyncRing::take(&mut ebpf).expect("sync ring");
        let stats = raw_map(&ebpf, STATS_MAP);
        let bundles = raw_map(&ebpf, ka_common::stats::STATS_BUNDLES_MAP);
        let mut service_ids = HashSet::new();
        let mut backend_ids = HashSet::new();
        let mut vips = HashSet::new();
        let mut nat_backends = HashSet::new();
        for s in &desired.services {
            service_ids.insert(writer.service_id(s).expect("service id"));
            for m in s.members() {
                vips.insert(addr16(m.vip));
            }
            for b in &s.backends {
                if let Some(id) = writer.backend_id(s, b.addr, b.port, b.method) {
                    backend_ids.insert(id);
                }
                if b.method == Method::Nat {
                    nat_backends.insert(addr16(b.addr));
                }
            }
        }
        let vrrp_keys = vrrp_instances()
            .iter()
            .map(|(i, vrid, f, _)| bytemuck::bytes_of::<VrrpKey>(&vrrp_fast::key(ifaces.index[*i], *vrid, *f)).to_vec())
            .collect();
        let mut h = Harness {
            ebpf,
            ifaces,
            desired,
            stats,
            bundles,
            last: Vec::new(),
            events,
            sync,
            snapshot: Vec::new(),
            forwarded: 0,
            too_big: 0,
            nat_replies: 0,
            toggles: 0,
            vrrp_keys,
            service_ids,
            backend_ids,
            vips,
            nat_backends,
        };
        h.last = h.counters();
        h.snapshot = h.take_snapshot();
        h
    }

    /// The services written to the maps.
    pub fn desired(&self) -> &DesiredState {
        &self.desired
    }

    /// Every counter summed over CPUs: `KA_STATS` holds one `Counters` array per CPU (one
    /// entry), read back in one batch, plus the bundles of `KA_STATS_BUNDLES`.
    fn counters(&self) -> Vec<u64> {
        let n = Counter::ALL.len();
        let mut out = vec![0u64; n];
        let stride = self.stats.value_stride;
        for_each_batch(self.stats, 1, |_, v, got| {
            for cpu in v[..got * stride].chunks_exact(n * 8) {
                for (o, c) in out.iter_mut().zip(cpu.chunks_exact(8)) {
                    *o = o.wrapping_add(u64::from_ne_bytes(c.try_into().unwrap_or([0; 8])));
                }
            }
        })
        .expect("reading KA_STATS");
        // Each bundle's count added to its counters, as `ka status` reads them.
        let mut sum = [0u64; ka_common::stats::COUNTER_COUNT as usize];
        let per_cpu = self.bundles.value_stride / possible_cpus();
        for_each_batch(self.bundles, 1, |_, v, got| {
            for cpu in v[..got * self.bundles.value_stride].chunks_exact(per_cpu) {
                let words: Vec<u64> = cpu.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]))).collect();
                ka_common::stats::add_bundles(&mut sum, &words);
            }
        })
        .expect("reading KA_STATS_BUNDLES");
        for (o, s) in out.iter_mut().zip(sum) {
            *o = o.wrapping_add(s);
        }
        out
    }

    fn take_snapshot(&self) -> Vec<(&'static str, u64)> {
        let mut s: Vec<(&'static str, u64)> =
            USERSPACE_MAPS.iter().map(|n| (*n, map_hash(raw_map(&self.ebpf, n)).unwrap_or_else(|e| panic!("reading {n}: {e}")))).collect();
        s.push((TABLES_MAP, self.tables_hash()));
        s
    }

    /// A hash of [`TABLE_SAMPLES`] slots, evenly spread, of the active bank of every service's
    /// table (reading all 8M entries takes seconds).
    fn tables_hash(&self) -> u64 {
        let tables = raw_map(&self.ebpf, TABLES_MAP);
        let mut h = std::hash::DefaultHasher::new();
        let mut services = Vec::new();
        for name in [SERVICES4_MAP, SERVICES6_MAP] {
            for (_, v) in map_entries(raw_map(&self.ebpf, name)).unwrap_or_else(|e| panic!("reading {name}: {e}")) {
                let sv: ka_common::lb::ServiceValue = bytemuck::pod_read_unaligned(&v[..std::mem::size_of::<ka_common::lb::ServiceValue>()]);
                let bank = (sv.bank & 1) as usize;
                services.push((sv.id, sv.base[bank], sv.len[bank].min(sv.cap)));
            }
        }
        services.sort_unstable();
        services.dedup();
        for (id, base, len) in services {
            let n = len.min(TABLE_SAMPLES);
            for i in 0..n {
                let slot = (u64::from(i) * u64::from(len) / u64::from(n.max(1))) as u32;
                let v = array_u32(tables, base + slot).unwrap_or_else(|e| panic!("reading {TABLES_MAP}: {e}"));
                (id, slot, v).hash(&mut h);
            }
        }
        h.finish()
    }

    /// Runs one packet and checks every per-packet invariant.
    ///
    /// # Errors
    /// The invariant that broke, with what happened.
    pub fn run(&mut self, rec: &Record) -> Result<XdpRun, String> {
        let prog_name = if rec.decap() { DECAP_PROGRAM } else { XDP_PROGRAM };
        let ifindex = self.ifaces.index[rec.iface()];
        let prog: &Xdp = self.ebpf.program(prog_name).expect("program").try_into().expect("xdp");
        let mut out = vec![0u8; rec.frame.len() + 512];
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(rec.frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        let res = prog
            .test_run(TestRunOptions { data_in: Some(&rec.frame), data_out: Some(&mut out), ctx_in: Some(&ctx), repeat: 1, ..Default::default() })
            .map_err(|e| format!("BPF_PROG_TEST_RUN failed: {e}"))?;
        out.truncate(res.data_size_out as usize);
        let now = self.counters();
        let delta: Vec<u64> = now.iter().zip(&self.last).map(|(a, b)| a.wrapping_sub(*b)).collect();
        self.last = now;
        let run = XdpRun { action: res.return_value, out, delta };
        if matches!(run.action, XDP_TX | XDP_REDIRECT) {
            self.forwarded += 1;
            self.too_big += run.moved(Counter::LbIcmpTooBig);
            self.nat_replies += run.moved(Counter::LbNatReply);
        }
        self.check(rec, &run).map_err(|e| format!("{e}\n  program {prog_name} on {}, verdict {}, counters moved: {}", ["lb0", "lb1", "lo"][rec.iface()], run.action, moved_names(&run)))?;
        Ok(run)
    }

    /// The per-packet invariants of `run`, the result of `rec` (see the module documentation).
    ///
    /// # Errors
    /// The first that does not hold.
    pub fn check(&self, rec: &Record, run: &XdpRun) -> Result<(), String> {
        let input = &rec.frame;
        if let Some((c, d)) = Counter::ALL.iter().map(|c| (*c, run.moved(*c))).find(|(_, d)| *d > 64) {
            return Err(format!("counter {} moved by {d} for one packet", c.name()));
        }
        // Verdict and verdict counters.
        if !matches!(run.action, XDP_DROP | XDP_PASS | XDP_TX | XDP_REDIRECT) {
            return Err(format!("verdict {} (XDP_ABORTED or unknown)", run.action));
        }
        let verdicts: Vec<(Counter, u64)> = VERDICTS.iter().map(|(c, _)| (*c, run.moved(*c))).filter(|(_, d)| *d != 0).collect();
        let want = VERDICTS.iter().find(|(_, a)| *a == run.action).map(|(c, _)| *c);
        if verdicts.len() != 1 || verdicts[0].1 != 1 || Some(verdicts[0].0) != want {
            return Err(format!("verdict counters {verdicts:?} for verdict {}: exactly one must move, by one", run.action));
        }
        // Parse counters.
        let classes: Vec<Counter> = CLASSES.iter().copied().filter(|c| run.moved(*c) != 0).collect();
        let tagged = input.len() >= 14 && matches!(u16::from_be_bytes([input[12], input[13]]), 0x8100 | 0x88a8);
        if rec.decap() {
            if classes.iter().any(|c| matches!(c, Counter::Ipv4 | Counter::Ipv6 | Counter::OtherL3)) || classes.len() > 1 {
                return Err(format!("ka_decap moved parse counters {classes:?} (at most one error)"));
            }
        } else {
            if classes.len() != 1 || run.moved(classes[0]) != 1 {
                return Err(format!("parse-class counters {classes:?}: exactly one must move, by one"));
            }
            let class = classes[0];
            let transports: Vec<Counter> = TRANSPORTS.iter().copied().filter(|c| run.moved(*c) != 0).collect();
            let ip_parsed = matches!(class, Counter::Ipv4 | Counter::Ipv6);
            if ip_parsed != (transports.len() == 1) || transports.len() > 1 {
                return Err(format!("transport counters {transports:?} after {}", class.name()));
            }
            let parsed = ip_parsed || class == Counter::OtherL3;
            if parsed && (run.moved(Counter::Vlan) == 1) != tagged {
                return Err(format!("vlan moved {} for a frame {}tagged", run.moved(Counter::Vlan), if tagged { "" } else { "un" }));
            }
            let reasons = Counter::ALL.iter().any(|c| is_reason(*c) && run.moved(*c) != 0);
            if transports.first().is_some_and(|t| matches!(t, Counter::Tcp | Counter::Udp | Counter::Icmp | Counter::Vrrp)) && !reasons {
                return Err(format!("a {} packet got verdict {} with no counter saying why", transports[0].name(), run.action));
            }
        }
        let reasons = Counter::ALL.iter().any(|c| is_reason(*c) && run.moved(*c) != 0);
        match run.action {
            XDP_DROP if !reasons => Err("a drop with no counter saying why".to_owned()),
            XDP_DROP => Ok(()),
            XDP_PASS if rec.decap() && (run.moved(Counter::DecapIpip) + run.moved(Counter::DecapIp6ip6)) != 0 => self.check_decap(input, &run.out),
            XDP_PASS if run.out != *input => Err(format!("a passed frame was changed\n{}", ka_tests::packet::hex_diff(input, &run.out))),
            XDP_PASS => Ok(()),
            _ if rec.decap() => Err(format!("ka_decap forwarded (verdict {})", run.action)),
            _ => self.check_forwarded(rec, run),
        }
    }

    fn check_decap(&self, input: &[u8], out: &[u8]) -> Result<(), String> {
        let ip = frames::ip(input).ok_or("decapsulated a frame without an IP header")?;
        let inner = input.get(ip.l4()..).ok_or("decapsulated past the frame")?;
        // The inner header: of the outer protocol's family, inside the outer packet.
        let v4 = ip.proto == 4;
        let version = inner.first().map(|b| b >> 4);
        let hlen = if v4 { inner.first().map_or(0, |b| usize::from(b & 0x0f) * 4) } else { 40 };
        if version != Some(if v4 { 4 } else { 6 }) || hlen < 20 || ip.l4() + hlen > ip.end() {
            return Err(format!("decapsulated a malformed inner header (version {version:?}, {hlen} bytes, outer packet ends at {})", ip.end()));
        }
        let mut want = input[..12].to_vec();
        want.extend_from_slice(if v4 { &[0x08, 0x00] } else { &[0x86, 0xdd] });
        want.extend_from_slice(inner);
        if out != want {
            return Err(format!("decapsulated frame is not the inner packet\n{}", ka_tests::packet::hex_diff(&want, out)));
        }
        Ok(())
    }

    fn check_forwarded(&self, rec: &Record, run: &XdpRun) -> Result<(), String> {
        let (input, out) = (&rec.frame, &run.out);
        let in_ip = frames::ip(input).ok_or("forwarded a frame the fuzzer cannot parse")?;
        let (t, l3, tags) = frames::ether_type(out).ok_or("forwarded frame shorter than Ethernet")?;
        if tags != 0 || l3 != 14 || !matches!(t, 0x0800 | 0x86dd) {
            return Err(format!("forwarded frame is not untagged IP (EtherType {t:#06x}, {tags} tags)"));
        }
        let oip = frames::ip(out).ok_or("forwarded frame's IP header is cut short or bad")?;
        well_formed(out, &oip).map_err(|e| format!("forwarded frame: {e}"))?;
        let too_big = run.moved(Counter::LbIcmpTooBig) != 0;
        let (dst_mac, src_mac) = (&out[0..6], &out[6..12]);
        let ingress_mac = self.ifaces.mac[rec.iface()];
        if too_big {
            if run.action != XDP_TX || dst_mac != &input[6..12] || src_mac != &input[0..6] {
                return Err("an ICMP too-big answer must go back where the packet came from (XDP_TX, MACs swapped)".to_owned());
            }
        } else {
            if !NEXT_HOP_MACS.iter().any(|m| m == dst_mac) {
                return Err(format!("forwarded to unknown MAC {dst_mac:02x?}"));
            }
            if !(src_mac == LB0_MAC || src_mac == LB1_MAC) {
                return Err(format!("forwarded with source MAC {src_mac:02x?}, not an interface's"));
            }
            if (run.action == XDP_TX) != (src_mac == ingress_mac) {
                return Err(format!("verdict {} but source MAC {src_mac:02x?} (ingress {ingress_mac:02x?})", run.action));
            }
        }
        let vin = frames::validity(input, &in_ip);
        if too_big {
            let v = frames::validity(out, &oip);
            if (oip.v4 && v.ip4 != Some(true)) || v.l4 != Some(true) || oip.proto != if oip.v4 { frames::ICMP } else { frames::ICMPV6 } {
                return Err(format!("generated ICMP error with bad checksums {v:?}"));
            }
            let quote = out.get(oip.l4() + 8..).unwrap_or_default();
            if quote.is_empty() || input.get(14..14 + quote.len()) != Some(quote) {
                return Err("the ICMP error does not quote the packet".to_owned());
            }
            let max = if oip.v4 { 576 } else { 1280 };
            if oip.len > max || oip.end() != out.len() {
                return Err(format!("ICMP error of {} bytes (limit {max}) in a frame of {}", oip.len, out.len()));
            }
        } else if run.moved(Counter::LbTun) != 0 {
            let hdr = if oip.v4 { 20 } else { 40 };
            let v = frames::validity(out, &oip);
            if (oip.v4 && (v.ip4 != Some(true) || oip.proto != 4)) || (!oip.v4 && oip.proto != 41) {
                return Err(format!("bad tunnel header (checksum {:?}, protocol {})", v.ip4, oip.proto));
            }
            if out.len() != input.len() + hdr || out[14 + hdr..] != input[14..] {
                return Err(format!("the tunnel does not carry the packet as it came\n{}", ka_tests::packet::hex_diff(&input[14..], out.get(14 + hdr..).unwrap_or_default())));
            }
            if oip.len != in_ip.len + hdr {
                return Err(format!("tunnel length {} for an inner packet of {}", oip.len, in_ip.len));
            }
            let inner = frames::ip_at(out, 14 + hdr, oip.proto == 4, oip.proto == 41).ok_or("the tunnel's inner IP header is bad")?;
            well_formed(out, &inner).map_err(|e| format!("tunnelled packet: {e}"))?;
        } else {
            if out.len() != input.len() {
                return Err(format!("forwarded frame of {} bytes for {} in", out.len(), input.len()));
            }
            vin.kept_by(&frames::validity(out, &oip))
                .map_err(|l| format!("the {l} checksum was valid on input and is not on output\n{}", ka_tests::packet::hex_diff(input, out)))?;
            let nat = run.moved(Counter::LbNat) + run.moved(Counter::LbNatReply) != 0;
            if !nat && out[12..] != input[12..] {
                return Err(format!("direct routing changed more than the MACs\n{}", ka_tests::packet::hex_diff(input, out)));
            }
        }
        Ok(())
    }

    /// Runs an input; for a forwarded packet of a new flow (not a SYN) runs it again and checks
    /// it is forwarded identically. Returns one signature per run.
    ///
    /// # Errors
    /// The first invariant that broke.
    pub fn exec(&mut self, input: &[Record]) -> Result<Vec<u64>, String> {
        let mut sigs = Vec::with_capacity(input.len());
        for (i, rec) in input.iter().enumerate() {
            let run = self.run(rec).map_err(|e| format!("packet {i}: {e}"))?;
            sigs.push(signature(rec, &run, false));
            if matches!(run.action, XDP_TX | XDP_REDIRECT) && run.moved(Counter::LbNewFlow) != 0 && !is_syn(&rec.frame) {
                let again = self.run(rec).map_err(|e| format!("packet {i} sent again: {e}"))?;
                if again.action != run.action || again.out != run.out {
                    return Err(format!(
                        "packet {i} sent again: verdict {} (first {}), counters {}\n{}",
                        again.action,
                        run.action,
                        moved_names(&again),
                        ka_tests::packet::hex_diff(&run.out, &again.out)
                    ));
                }
                sigs.push(signature(rec, &again, true));
            }
        }
        Ok(sigs)
    }

    /// Drains the VRRP and sync rings, checking each event names a configured instance or
    /// backend.
    ///
    /// # Errors
    /// An event about something not configured.
    pub fn drain(&mut self) -> Result<(), String> {
        for e in self.events.poll() {
            let key = bytemuck::bytes_of::<VrrpKey>(&vrrp_fast::key(e.ifindex, e.vrid, e.family)).to_vec();
            if !self.vrrp_keys.contains(&key) {
                return Err(format!("VRRP event for an instance not configured: {e:?}"));
            }
        }
        let mut evs = Vec::new();
        while self.sync.drain(&mut evs, 4096) > 0 {
            for ev in evs.drain(..) {
                if !self.backend_ids.contains(&ev.backend) {
                    return Err(format!("sync event for backend {} (not configured): {ev:?}", ev.backend));
                }
            }
        }
        Ok(())
    }

    /// Checks the maps (see the module documentation).
    ///
    /// # Errors
    /// What is inconsistent.
    pub fn check_maps(&mut self) -> Result<(), String> {
        let now = self.take_snapshot();
        for ((name, a), (_, b)) in self.snapshot.iter().zip(&now) {
            if a != b {
                return Err(format!("map {name}, written by userspace only, was changed by the datapath"));
            }
        }
        let svc = sum_packets(raw_map(&self.ebpf, SERVICE_STATS_MAP)).map_err(|e| e.to_string())?;
        let be = sum_packets(raw_map(&self.ebpf, BACKEND_STATS_MAP)).map_err(|e| e.to_string())?;
        let want_svc = self.forwarded.wrapping_sub(self.too_big);
        let want_be = want_svc.wrapping_sub(self.nat_replies);
        if svc != want_svc || be != want_be {
            return Err(format!(
                "per-service packets {svc} and per-backend packets {be}, expected {want_svc} and {want_be} ({} forwarded, {} ICMP too-big answers, {} NAT replies)",
                self.forwarded, self.too_big, self.nat_replies
            ));
        }
        // Every stamped last-seen slot is the slot of a configured instance.
        let mut slots = HashSet::new();
        for (k, v) in map_entries(raw_map(&self.ebpf, VRRP_INSTANCES_MAP)).map_err(|e| e.to_string())? {
            if !self.vrrp_keys.contains(&k) {
                return Err(format!("VRRP instance {k:02x?} not configured"));
            }
            slots.insert(bytemuck::pod_read_unaligned::<VrrpInstance>(&v[..std::mem::size_of::<VrrpInstance>()]).seen_slot);
        }
        for (k, v) in map_entries(raw_map(&self.ebpf, VRRP_SEEN_MAP)).map_err(|e| e.to_string())? {
            let slot = u32::from_ne_bytes(k[..4].try_into().map_err(|_| "KA_VRRP_SEEN key".to_owned())?);
            let stamped = v.iter().any(|b| *b != 0);
            if stamped && !u16::try_from(slot).is_ok_and(|s| slots.contains(&s)) {
                return Err(format!("last-seen slot {slot} stamped for no configured instance"));
            }
        }
        for (k, v) in map_entries(raw_map(&self.ebpf, NAT_MAP)).map_err(|e| e.to_string())? {
            let key: FlowKey = bytemuck::pod_read_unaligned(&k);
            let val: NatValue = bytemuck::pod_read_unaligned(&v[..std::mem::size_of::<NatValue>()]);
            if !self.service_ids.contains(&val.service) || !self.vips.contains(&val.vip) || !self.nat_backends.contains(&key.src) {
                return Err(format!("NAT entry {key:?} -> {val:?} names no configured service, VIP or NAT real server"));
            }
        }
        for (k, v) in map_entries(raw_map(&self.ebpf, PERSIST_MAP)).map_err(|e| e.to_string())? {
            let val: ConnValue = bytemuck::pod_read_unaligned(&v[..std::mem::size_of::<ConnValue>()]);
            if !self.backend_ids.contains(&val.backend) {
                let key: FlowKey = bytemuck::pod_read_unaligned(&k);
                return Err(format!("persistence template {key:?} -> backend {} (not configured)", val.backend));
            }
        }
        Ok(())
    }

    /// Flips the state userspace controls (the gated service's mastership, dropping adverts
    /// of unknown VRIDs, the sync master flag), so that both sides of each are fuzzed; the
    /// userspace maps' snapshot is taken again.
    pub fn toggle(&mut self) {
        self.toggles += 1;
        let t = self.toggles;
        MapWriter::set_master(&mut self.ebpf, GATED_SLOT, t & 1 == 0).expect("mastership");
        vrrp_fast::set_enabled(&mut self.ebpf, true, t % 4 >= 2).expect("VRRP fast path");
        set_master_flag(&mut self.ebpf, t % 8 < 4).expect("sync flag");
        self.snapshot = self.take_snapshot();
    }
}

/// Whether the frame is a TCP SYN without ACK (scheduled afresh each time it is sent).
fn is_syn(f: &[u8]) -> bool {
    frames::ip(f).is_some_and(|ip| ip.proto == frames::TCP && f.get(ip.l4() + 13).is_some_and(|fl| fl & 0x12 == 0x02))
}

/// The lengths of the IP packet `ip` of `f` agree with the frame, and its transport header is
/// inside the IP packet.
fn well_formed(f: &[u8], ip: &frames::Ip) -> Result<(), String> {
    if ip.len < ip.hlen || ip.end() > f.len() {
        return Err(format!("IP length {} (header {}) in {} bytes after the Ethernet header", ip.len, ip.hlen, f.len() - ip.off));
    }
    if ip.fragment {
        return Ok(());
    }
    let room = ip.len - ip.hlen;
    let need = match ip.proto {
        frames::TCP => f.get(ip.l4() + 12).map_or(20, |b| usize::from(b >> 4) * 4).max(20),
        frames::UDP | frames::ICMP | frames::ICMPV6 => 8,
        _ => 0,
    };
    if need > room {
        return Err(format!("transport header of {need} bytes but only {room} in the IP packet"));
    }
    Ok(())
}

fn moved_names(run: &XdpRun) -> String {
    Counter::ALL.iter().filter(|c| run.moved(**c) != 0).map(|c| format!("{}+{}", c.name(), run.moved(*c))).collect::<Vec<_>>().join(" ")
}

/// What stands in for coverage: the program, the verdict, which counters moved, whether the
/// frame changed length, and whether this is a repeat.
fn signature(rec: &Record, run: &XdpRun, repeat: bool) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    (rec.decap(), run.action, repeat, run.out.len().cmp(&rec.frame.len())).hash(&mut h);
    for c in Counter::ALL {
        (run.moved(*c) != 0).hash(&mut h);
    }
    h.finish()
}

// ---------------------------------------------------------------------------------------------
// Mutations.

/// xorshift64*: small, seedable, good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// True with probability 1/`n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// What the mutator knows about the maps: the services' keys and real servers, the VRRP
/// instances, interesting values.
pub struct Dict {
    keys: Vec<(IpAddr, u16, L4Proto)>,
    nat: Vec<(IpAddr, u16, IpAddr, u16)>,
    addrs: Vec<IpAddr>,
}

impl Dict {
    /// The dictionary of `d`'s services, the lab's real servers, clients and VRRP peers.
    pub fn new(d: &DesiredState) -> Dict {
        let mut keys = Vec::new();
        let mut nat = Vec::new();
        let mut addrs: Vec<IpAddr> = CLIENTS.iter().chain(&[VRRP_MASTER4, VRRP_MASTER6, "198.18.1.1", "198.18.2.1", "198.18.1.254"]).map(|a| ip(a)).collect();
        for s in &d.services {
            for m in s.members() {
                let port = if m.port == 0 { 1 + (keys.len() as u16 * 977) % 60000 } else { m.port };
                keys.push((m.vip, port, s.proto));
                addrs.push(m.vip);
                for b in &s.backends {
                    if b.method == Method::Nat {
                        nat.push((m.vip, m.port, b.addr, b.port));
                    }
                }
            }
            addrs.extend(s.backends.iter().map(|b| b.addr));
        }
        Dict { keys, nat, addrs }
    }

    /// `f` as the director forwards it when its destination is a NAT service: to the real
    /// server's address and port.
    fn nat_forwarded(&self, f: &[u8]) -> Vec<u8> {
        let mut out = f.to_vec();
        if let Some((_, _, rs, port)) = frames::addr(f, true).and_then(|d| self.nat.iter().find(|(v, _, _, _)| *v == d).copied()) {
            frames::set_addr(&mut out, true, rs);
            if port != 0 {
                frames::set_port(&mut out, true, port);
            }
            frames::repair(&mut out);
        }
        out
    }

    fn addr(&self, rng: &mut Rng, v4: bool) -> IpAddr {
        let same: Vec<IpAddr> = self.addrs.iter().copied().filter(|a| a.is_ipv4() == v4).collect();
        *rng.pick(&same)
    }
}

const INTERESTING: [u8; 10] = [0, 1, 2, 4, 5, 0x7f, 0x80, 0xfe, 0xff, 0x40];
const PROTOS: [u8; 10] = [frames::TCP, frames::UDP, frames::ICMP, frames::ICMPV6, frames::VRRP, 4, 41, 51, 0, 44];

/// A frame built from scratch: a packet to a service, a reply, an advert, an error.
fn fresh(rng: &mut Rng, dict: &Dict) -> Record {
    use ka_tests::packet::Frame;
    let (vip, port, proto) = *rng.pick(&dict.keys);
    let v4 = vip.is_ipv4();
    let client = dict.addr(rng, v4).to_string();
    let vip_s = vip.to_string();
    let sport = 1024 + rng.below(60000) as u16;
    let flags = *rng.pick(&[0x02u8, 0x10, 0x18, 0x11, 0x04, 0x12]);
    let mut f = match (proto, v4) {
        (L4Proto::Tcp, true) => Frame::tcp4(&client, &vip_s, sport, port, flags),
        (L4Proto::Tcp, false) => Frame::tcp6(&client, &vip_s, sport, port, flags),
        (L4Proto::Udp, true) => Frame::udp4(&client, &vip_s, sport, port),
        (L4Proto::Udp, false) => Frame::udp6(&client, &vip_s, sport, port),
    };
    f.eth_dst = LB0_MAC;
    f.eth_src = GW_MAC;
    let payload: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
    let mut frame = f.payload(&payload).build();
    if rng.one_in(8) {
        // A big one (ICMP too-big paths).
        let extra = 380 + rng.below(1100);
        frame.extend((0..extra).map(|_| rng.next() as u8));
        frames::set_frag(&mut frame, if rng.one_in(3) { 0 } else { 0x4000 });
        frames::repair(&mut frame);
    }
    let sel = if rng.one_in(4) { 1 } else { 0 };
    match rng.below(6) {
        0 => {
            // A VRRP advert to one of the instances.
            let (iface, vrid, fam, p) = rng.pick(&vrrp_instances()).clone();
            let src = if rng.one_in(2) { ip(if fam == Family::V4 { VRRP_MASTER4 } else { VRRP_MASTER6 }) } else { dict.addr(rng, fam == Family::V4) };
            let vips = [dict.addr(rng, fam == Family::V4)];
            let pass = (p.version == 2 && rng.one_in(2)).then_some(b"secret\0\0");
            let prio = *rng.pick(&[150u8, 100, 255, 0, 50, 200]);
            let interval = if p.version == 2 { 1 } else { *rng.pick(&[100u16, 50, 300]) };
            let mut a = frames::vrrp_advert(src, p.version == 3, vrid.wrapping_add(u8::from(rng.one_in(8))), prio, interval, &vips[..rng.below(2)], pass);
            if rng.one_in(4) {
                frames::set_ttl(&mut a, 64);
            }
            Record { sel: iface as u8, frame: a }
        }
        1 => {
            // An ICMP error to a VIP about a packet the VIP sent.
            let back = frames::reversed(&frame).unwrap_or_default();
            let code = *rng.pick(&[3u8, 4, 1, 0xff]);
            let e = frames::icmp_error(&frame, dict.addr(rng, v4), vip, frames::ip_packet(&back).unwrap_or_default(), 28 + rng.below(40), code);
            Record { sel, frame: e }
        }
        _ => Record { sel, frame },
    }
}

/// Mutates `input` in place: byte edits, structure-aware edits, derived packets (a NAT real
/// server's reply, an ICMP error about a packet), splices with the corpus; usually followed
/// by a repair of lengths and checksums.
pub fn mutate(rng: &mut Rng, dict: &Dict, input: &mut Vec<Record>, corpus: &[Vec<Record>]) {
    if input.is_empty() {
        input.push(fresh(rng, dict));
    }
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let i = rng.below(input.len());
        let op = rng.below(30);
        let r = &mut input[i];
        let f = &mut r.frame;
        let n = f.len();
        match op {
            0 => {
                let at = rng.below(n);
                f[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(n);
                f[at] = *rng.pick(&INTERESTING);
            }
            2 => {
                let at = rng.below(n);
                f[at] = rng.next() as u8;
            }
            3 => {
                // A byte in the headers, where it matters most.
                let at = rng.below(n.min(80));
                f[at] = rng.next() as u8;
            }
            4 => f.truncate(MIN_FRAME.max(n - rng.below(n.min(64) + 1).min(n))),
            5 => {
                let k = 1 + rng.below(32);
                f.extend((0..k).map(|_| rng.next() as u8));
            }
            6 => {
                let at = rng.below(n + 1);
                let k = 1 + rng.below(8);
                f.splice(at..at, (0..k).map(|_| rng.next() as u8));
            }
            7 => {
                let at = rng.below(n);
                let k = (1 + rng.below(8)).min(n - at);
                f.drain(at..at + k);
            }
            8 | 9 => {
                let v4 = frames::ip(f).is_none_or(|ip| ip.v4);
                let a = dict.addr(rng, v4);
                frames::set_addr(f, true, a);
                if let Some((_, port, _)) = dict.keys.iter().find(|(v, _, _)| *v == a).copied() {
                    frames::set_port(f, true, port);
                }
            }
            10 => {
                let v4 = frames::ip(f).is_none_or(|ip| ip.v4);
                let a = dict.addr(rng, v4);
                frames::set_addr(f, false, a);
            }
            11 => frames::set_port(f, rng.one_in(2), *rng.pick(&[0u16, 53, 80, 443, 8080, 5353, 1, 65535, 40000])),
            12 => frames::set_tcp_flags(f, *rng.pick(&[0x02u8, 0x12, 0x10, 0x11, 0x04, 0x00, 0xff, 0x18])),
            13 => frames::set_proto(f, *rng.pick(&PROTOS)),
            14 => frames::set_ttl(f, *rng.pick(&[255u8, 254, 64, 1, 0])),
            15 => frames::set_frag(f, *rng.pick(&[0x2000u16, 0x0001, 0x4000, 0x2001, 0x1fff, 0x8000])),
            16 => frames::push_vlan(f, *rng.pick(&[0x8100u16, 0x88a8]), rng.below(4096) as u16),
            17 => frames::pop_vlan(f),
            18 => {
                let k = 1 + rng.below(40);
                let o: Vec<u8> = (0..k).map(|_| rng.next() as u8).collect();
                frames::add_ipv4_options(f, &o);
            }
            19 => frames::add_ipv6_ext(f, *rng.pick(&[0u8, 43, 44, 51, 60]), rng.below(3) as u8, *rng.pick(&[0u16, 8, 1, 9])),
            20 => r.sel = rng.next() as u8,
            21 => r.sel = (r.sel & !3) | rng.below(3) as u8,
            22 => {
                // The NAT real server's reply to this packet.
                if let Some((_, _, rs, rs_port)) = frames::addr(f, true).and_then(|d| dict.nat.iter().find(|(v, _, _, _)| *v == d).copied()) {
                    let port = if rs_port == 0 { frames::ports(f).map_or(80, |p| p.1) } else { rs_port };
                    if let Some(reply) = frames::nat_reply(f, rs, port) {
                        let rec = Record { sel: 1, frame: reply };
                        insert(input, i + 1, rec);
                    }
                }
            }
            23 => {
                // An ICMP error about this packet, addressed to the quoted packet's source: about
                // the packet as a NAT real server got it (to the client, arriving on lb1), or
                // about the VIP's reply to it (to the VIP, arriving on lb0).
                let to_client = rng.one_in(2);
                let quoted = if to_client { dict.nat_forwarded(f) } else { frames::reversed(f).unwrap_or_default() };
                if let Some(to) = frames::addr(&quoted, false) {
                    let router = dict.addr(rng, to.is_ipv4());
                    let code = *rng.pick(&[3u8, 4, 1, 0xff, 0]);
                    let e = frames::icmp_error(f, router, to, frames::ip_packet(&quoted).unwrap_or_default(), 28 + rng.below(600), code);
                    let rec = Record { sel: u8::from(to_client), frame: e };
                    insert(input, i + 1, rec);
                }
            }
            24 => {
                let rec = fresh(rng, dict);
                insert(input, rng.below(input.len() + 1), rec);
            }
            25 => {
                if let Some(other) = (!corpus.is_empty()).then(|| rng.pick(corpus)).and_then(|c| c.first()) {
                    let rec = other.clone();
                    insert(input, rng.below(input.len() + 1), rec);
                }
            }
            26 => {
                // Splice: the head of this frame, the tail of another.
                if let Some(other) = (!corpus.is_empty()).then(|| rng.pick(corpus)).and_then(|c| c.first()) {
                    let cut = rng.below(n.min(other.frame.len()));
                    f.truncate(cut);
                    f.extend_from_slice(&other.frame[cut..]);
                }
            }
            27 => {
                if input.len() > 1 {
                    input.remove(i);
                }
            }
            28 => {
                let rec = input[i].clone();
                insert(input, i, rec);
            }
            _ => {
                // A run of bytes copied within the frame.
                let from = rng.below(n);
                let to = rng.below(n);
                let k = rng.below(16).min(n - from).min(n - to);
                f.copy_within(from..from + k, to);
            }
        }
    }
    for r in input.iter_mut() {
        r.frame.truncate(MAX_FRAME);
        if r.frame.len() < MIN_FRAME {
            r.frame.resize(MIN_FRAME, 0);
        }
    }
    if !rng.one_in(4) {
        for r in input.iter_mut() {
            frames::repair(&mut r.frame);
        }
    }
}

fn insert(input: &mut Vec<Record>, at: usize, rec: Record) {
    if input.len() < MAX_RECORDS {
        input.insert(at.min(input.len()), rec);
    } else if let Some(last) = input.last_mut() {
        *last = rec;
    }
}

// ---------------------------------------------------------------------------------------------
// Campaigns.

/// Options of a campaign.
#[derive(Clone, Debug)]
pub struct Options {
    /// Stop after this long.
    pub duration: Duration,
    /// Stop after this many executions, if given.
    pub max_execs: Option<u64>,
    /// Seed corpora (read only).
    pub seeds: Vec<PathBuf>,
    /// Where new corpus entries go (none: kept in memory only).
    pub corpus_out: Option<PathBuf>,
    /// Where failing inputs go.
    pub artifacts: PathBuf,
    /// Random seed.
    pub seed: u64,
    /// Print a progress line this often.
    pub progress: Option<Duration>,
}

/// What a campaign did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Inputs executed.
    pub execs: u64,
    /// Packets run (inputs hold one to four, plus repeats).
    pub packets: u64,
    /// Executions that broke an invariant.
    pub crashes: u64,
    /// The distinct failures, with the file each was saved to.
    pub failures: Vec<(String, PathBuf)>,
    /// Corpus size at the end.
    pub corpus: usize,
    /// Distinct signatures seen.
    pub signatures: usize,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Reads every input file of `dirs` (sorted by name).
pub fn read_corpus(dirs: &[PathBuf]) -> Vec<(PathBuf, Vec<Record>)> {
    let mut out = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else { continue };
        let mut files: Vec<PathBuf> = rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect();
        files.sort();
        for p in files {
            if let Ok(b) = std::fs::read(&p) {
                let recs = decode(&b);
                if !recs.is_empty() {
                    out.push((p, recs));
                }
            }
        }
    }
    out
}

/// The name an input is saved under: a hash of its bytes.
pub fn input_name(recs: &[Record]) -> String {
    let mut h = std::hash::DefaultHasher::new();
    encode(recs).hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Runs a campaign in a new lab namespace (see the module documentation).
pub fn campaign(opts: Options) -> Report {
    let ns = lab();
    let handle = ns.enter(move || run_campaign(&opts)).expect("entering the lab namespace");
    let report = handle.join().expect("campaign thread");
    drop(ns);
    report
}

fn run_campaign(opts: &Options) -> Report {
    let start = Instant::now();
    let mut h = Harness::new();
    let dict = Dict::new(h.desired());
    let mut rng = Rng::new(opts.seed);
    let mut report = Report::default();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut failures: HashMap<String, PathBuf> = HashMap::new();
    let mut corpus: Vec<Vec<Record>> = Vec::new();
    if let Some(d) = &opts.corpus_out {
        let _ = std::fs::create_dir_all(d);
    }
    let _ = std::fs::create_dir_all(&opts.artifacts);
    let mut on_failure = |report: &mut Report, input: &[Record], e: &str| {
        report.crashes += 1;
        let kind: String = e.lines().next().unwrap_or_default().chars().filter(|c| !c.is_ascii_digit()).take(90).collect();
        if !failures.contains_key(&kind) && failures.len() < 64 {
            let path = opts.artifacts.join(format!("crash-{}", input_name(input)));
            let _ = std::fs::write(&path, encode(input));
            let _ = std::fs::write(path.with_extension("txt"), e);
            eprintln!("xdp: invariant broken ({}): {e}", path.display());
            failures.insert(kind, path.clone());
            report.failures.push((e.to_owned(), path));
        }
    };
    // Seeds: every corpus file, then fresh frames when there are none.
    let mut seeds: Vec<Vec<Record>> = read_corpus(&opts.seeds).into_iter().map(|(_, r)| r).collect();
    if seeds.is_empty() {
        seeds = (0..64).map(|_| vec![fresh(&mut rng, &dict)]).collect();
    }
    for s in seeds {
        report.execs += 1;
        report.packets += s.len() as u64;
        match h.exec(&s) {
            Ok(sigs) => {
                let new = sigs.iter().filter(|s| seen.insert(**s)).count();
                if new > 0 || corpus.len() < 16 {
                    corpus.push(s);
                }
            }
            Err(e) => on_failure(&mut report, &s, &e),
        }
    }
    let mut last_maps = Instant::now();
    let mut last_progress = Instant::now();
    loop {
        let elapsed = start.elapsed();
        if elapsed >= opts.duration || opts.max_execs.is_some_and(|m| report.execs >= m) {
            break;
        }
        let mut input = if corpus.is_empty() || rng.one_in(16) { vec![fresh(&mut rng, &dict)] } else { rng.pick(&corpus).clone() };
        mutate(&mut rng, &dict, &mut input, &corpus);
        report.execs += 1;
        report.packets += input.len() as u64;
        match h.exec(&input) {
            Ok(sigs) => {
                if sigs.iter().filter(|s| seen.insert(**s)).count() > 0 {
                    if let Some(d) = &opts.corpus_out {
                        let _ = std::fs::write(d.join(input_name(&input)), encode(&input));
                    }
                    if corpus.len() < 4096 {
                        corpus.push(input.clone());
                    }
                }
            }
            Err(e) => on_failure(&mut report, &input, &e),
        }
        if report.execs % 512 == 0 {
            if let Err(e) = h.drain() {
                on_failure(&mut report, &input, &e);
            }
        }
        if report.execs % 50_000 == 0 {
            h.toggle();
        }
        if last_maps.elapsed() >= Duration::from_secs(5) {
            if let Err(e) = h.check_maps() {
                on_failure(&mut report, &input, &format!("maps: {e}"));
            }
            last_maps = Instant::now();
        }
        if opts.progress.is_some_and(|p| last_progress.elapsed() >= p) {
            eprintln!(
                "xdp: {} execs ({:.0}/s), {} crashes, corpus {}, {} signatures",
                report.execs,
                report.execs as f64 / start.elapsed().as_secs_f64(),
                report.crashes,
                corpus.len(),
                seen.len()
            );
            last_progress = Instant::now();
        }
    }
    if let Err(e) = h.drain().and_then(|()| h.check_maps()) {
        let last = corpus.last().cloned().unwrap_or_default();
        on_failure(&mut report, &last, &format!("maps at the end: {e}"));
    }
    report.corpus = corpus.len();
    report.signatures = seen.len();
    report.elapsed = start.elapsed();
    report
}

/// Runs every input of `files` on a fresh load (inputs one after the other), in a new lab;
/// returns the failures (input file, what broke).
pub fn replay(files: Vec<(PathBuf, Vec<Record>)>) -> Vec<(PathBuf, String)> {
    let ns = lab();
    let handle = ns
        .enter(move || {
            let mut h = Harness::new();
            let mut out = Vec::new();
            for (p, recs) in files {
                if let Err(e) = h.exec(&recs) {
                    out.push((p, e));
                }
            }
            if let Err(e) = h.drain().and_then(|()| h.check_maps()) {
                out.push((PathBuf::from("(maps)"), e));
            }
            out
        })
        .expect("entering the lab namespace");
    let out = handle.join().expect("replay thread");
    drop(ns);
    out
}

/// Address translation of the fixtures' frames into this lab's (`xdp_lb` uses 198.51.100.0/24
/// VIPs and 10.0.0.0/8 real servers; the fuzzer keeps to 198.18.0.0/15 and fd00:198:18::/48).
const TRANSLATE: [(&str, &str); 9] = [
    ("198.51.100.0", "198.18.100.0"),
    ("10.1.0.0", "198.18.1.0"),
    ("10.2.0.0", "198.18.2.0"),
    ("10.9.0.0", "198.18.9.0"),
    ("2001:db8::", "fd00:198:18:100::"),
    ("2001:db8:c::", "fd00:198:18:c::"),
    ("fd00:1::", "fd00:198:18:1::"),
    ("fd00:2::", "fd00:198:18:2::"),
    ("198.18.101.0", "198.18.2.0"),
];

/// Rewrites addresses of the fixtures' labs into the fuzzer's (prefix by prefix, /24 or /64,
/// anywhere in the frame), then repairs checksums that were valid.
pub fn translate(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    let valid = frames::ip(&f).map(|ip| frames::validity(&f, &ip));
    for (from, to) in TRANSLATE {
        let (a, b) = (ip(from), ip(to));
        let (pa, pb, plen) = match (a, b) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (a.octets().to_vec(), b.octets().to_vec(), 3),
            (IpAddr::V6(a), IpAddr::V6(b)) => (a.octets().to_vec(), b.octets().to_vec(), 8),
            _ => continue,
        };
        let mut i = 0;
        while i + pa.len() <= f.len() {
            if f[i..i + plen] == pa[..plen] {
                f[i..i + plen].copy_from_slice(&pb[..plen]);
                i += pa.len();
            } else {
                i += 1;
            }
        }
    }
    if valid.is_some_and(|v| v.ip4 != Some(false) && v.l4 != Some(false)) {
        frames::repair(&mut f);
    }
    f
}

/// Turns the frames the fixture tests exported (files `<test>-<program>-<ifname>-<hash>`,
/// see `common::export_seed`) into inputs, runs them, and writes to `out` one input per
/// distinct signature (the smallest), named by its hash. Returns (files read, written).
pub fn import(from: &Path, out: &Path) -> (usize, usize) {
    let mut inputs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(from).map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    for p in &files {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let Ok(frame) = std::fs::read(p) else { continue };
        if frame.len() < MIN_FRAME || frame.len() > MAX_FRAME {
            continue;
        }
        let parts: Vec<&str> = name.split('-').collect();
        let prog_decap = parts.get(1).is_some_and(|p| *p == DECAP_PROGRAM);
        // No interface: BPF_PROG_TEST_RUN without a context runs on the loopback device.
        let iface = match parts.get(2).copied() {
            Some("lb1") => 1u8,
            Some("lo" | "") => 2,
            _ => 0,
        };
        let sel = iface | if prog_decap { 3 << 2 } else { 0 };
        inputs.push(vec![Record { sel, frame: translate(&frame) }]);
    }
    inputs.sort_by_key(|i| i[0].frame.len());
    let n = inputs.len();
    let out_dir = out.to_path_buf();
    let ns = lab();
    let written = ns
        .enter(move || {
            let mut h = Harness::new();
            let mut seen = HashSet::new();
            let _ = std::fs::create_dir_all(&out_dir);
            let mut written = 0;
            for i in inputs {
                match h.exec(&i) {
                    Ok(sigs) => {
                        if sigs.iter().filter(|s| seen.insert(**s)).count() > 0 {
                            let _ = std::fs::write(out_dir.join(input_name(&i)), encode(&i));
                            written += 1;
                        }
                    }
                    Err(e) => eprintln!("import: a fixture frame breaks an invariant: {e}"),
                }
            }
            written
        })
        .expect("entering the lab namespace")
        .join()
        .expect("import thread");
    drop(ns);
    (n, written)
}
