//! The scheduling-table pool through the real map writer and BPF_PROG_TEST_RUN: thousands of
//! services each get a region of their own (disjoint, aligned, sized by their real servers),
//! a service whose real servers outgrow its region moves to a larger one without a packet
//! seeing a half-written table, removed services' regions are reused, and every service's
//! packets keep reaching its own real servers throughout.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use aya::maps::HashMap as BpfHashMap;
use ka::lb::{writer::MapWriter, BackendSpec, DesiredState, L4Proto, Method, Scheduler, ServiceSpec};
use ka_common::lb::{table_capacity, ServiceKey4, ServiceValue, SERVICES4_MAP, TABLE_POOL_SLOTS};
use ka_tests::{netns::Netns, packet::Frame};

use common::{Loaded, XDP_TX};

const LB0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];

/// Real server `i` (10.1.0.10 + i) and its MAC (02:00:00:00:10:i).
fn rs(i: u8) -> (String, [u8; 6]) {
    (format!("10.1.0.{}", 10 + i), [0x02, 0, 0, 0, 0x10, i])
}

fn lab() -> Netns {
    let ns = Netns::new("tb").expect("netns");
    ns.run(&["ip", "link", "add", "lb0", "address", "02:00:00:00:01:01", "type", "veth", "peer", "name", "lb0p"]).expect("veth");
    for dev in ["lb0", "lb0p"] {
        ns.run(&["ip", "link", "set", dev, "up"]).expect("up");
    }
    ns.run(&["ip", "addr", "add", "10.1.0.1/24", "dev", "lb0"]).expect("addr");
    ns.run(&["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1"]).expect("sysctl");
    for i in 0..8u8 {
        let (a, m) = rs(i);
        let mac = m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        ns.run(&["ip", "neigh", "replace", &a, "lladdr", &mac, "dev", "lb0", "nud", "permanent"]).expect("neigh");
    }
    ns
}

/// Service `n`: 198.51.100.1 port 1000 + n, Maglev (or round-robin for odd `n`) over real
/// servers `first..first + count`.
fn svc(n: u16, first: u8, count: u8) -> ServiceSpec {
    ServiceSpec {
        vip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
        port: 1000 + n,
        proto: L4Proto::Tcp,
        scheduler: if n.is_multiple_of(2) { Scheduler::Maglev } else { Scheduler::RoundRobin },
        persistence: None,
        master_slot: None,
        backends: (first..first + count)
            .map(|i| BackendSpec { addr: rs(i).0.parse().expect("ip"), port: 80, weight: 1, method: Method::Dr, healthy: true, uthreshold: 0, lthreshold: 0 })
            .collect(),
        options: Default::default(),
    }
}

/// The service values in the map, by port.
fn values(l: &Loaded) -> std::collections::BTreeMap<u16, ServiceValue> {
    let m: BpfHashMap<_, ServiceKey4, ServiceValue> = BpfHashMap::try_from(l.ebpf.map(SERVICES4_MAP).expect("map")).expect("hash map");
    m.iter().map(|e| e.expect("entry")).map(|(k, v)| (u16::from_be_bytes(k.port), v)).collect()
}

/// Every region is aligned on its size, inside the pool, and no two overlap.
fn check_regions(vals: &std::collections::BTreeMap<u16, ServiceValue>) {
    let mut regions: Vec<(u32, u32, u16)> = vals.iter().map(|(p, v)| (v.base[0], 2 * v.cap, *p)).collect();
    regions.sort_unstable();
    for w in regions.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "regions of ports {} and {} overlap: {w:?}", w[0].2, w[1].2);
    }
    for (start, size, port) in regions {
        assert!(size > 0 && start % size == 0 && start + size <= TABLE_POOL_SLOTS, "port {port}: region {start}+{size}");
        let v = vals[&port];
        assert_eq!(v.base[1], v.base[0] + v.cap, "port {port}: the second bank follows the first");
        assert!(v.len[(v.bank & 1) as usize] <= v.cap, "port {port}: table within its bank");
    }
}

/// A SYN to service `n` from `sport` is forwarded to one of real servers `first..first+count`.
fn forwarded_to(l: &Loaded, lb0: u32, n: u16, sport: u16, first: u8, count: u8) -> Result<(), String> {
    let mut f = Frame::tcp4("198.18.0.1", "198.51.100.1", sport, 1000 + n, 0x02);
    f.eth_dst = LB0_MAC;
    f.eth_src = CLIENT_MAC;
    let out = l.run_on(&f.build(), lb0);
    if out.action != XDP_TX {
        return Err(format!("service {n}: verdict {}", out.action));
    }
    let macs: Vec<[u8; 6]> = (first..first + count).map(|i| rs(i).1).collect();
    if !macs.iter().any(|m| out.data.get(..6) == Some(&m[..])) {
        return Err(format!("service {n}: to {:02x?}, not one of its real servers", out.data.get(..6)));
    }
    Ok(())
}

/// 3,000 services of 2 real servers, then: one grows to 6 real servers (a larger region), one
/// shrinks back, 500 are removed and 500 others added (reusing the freed regions once the
/// writer released them); at each step every region is disjoint and every service's packets
/// reach its own real servers.
#[test]
fn thousands_of_services_keep_disjoint_regions_across_changes() {
    ka_tests::require_root();
    let ns = lab();
    ns.enter(|| {
        let lb0 = nix::net::if_::if_nametoindex("lb0").expect("ifindex");
        let mut l = Loaded::new();
        let mut w = MapWriter::new();
        // Service n uses real servers (n % 4)..+2, or 6 for the grown one.
        let mut shape: std::collections::BTreeMap<u16, (u8, u8)> = (0..3000u16).map(|n| (n, ((n % 4) as u8, 2))).collect();
        let apply = |w: &mut MapWriter, l: &mut Loaded, shape: &std::collections::BTreeMap<u16, (u8, u8)>| {
            let d = DesiredState { services: shape.iter().map(|(n, (f, c))| svc(*n, *f, *c)).collect(), ..Default::default() };
            w.apply(&mut l.ebpf, &d).expect("apply");
        };
        let check = |l: &Loaded, shape: &std::collections::BTreeMap<u16, (u8, u8)>, step: &str| {
            let vals = values(l);
            assert_eq!(vals.len(), shape.len(), "{step}: one value per service");
            check_regions(&vals);
            for (n, (_, c)) in shape {
                assert_eq!(vals[&(1000 + n)].cap, table_capacity(u32::from(*c)), "{step}: service {n}'s bank size");
            }
            let probe: Vec<u16> = shape.keys().copied().step_by(37).chain(shape.keys().next_back().copied()).collect();
            for n in probe {
                let (f, c) = shape[&n];
                for sport in [40_000, 40_001, 40_002] {
                    forwarded_to(l, lb0, n, sport, f, c).unwrap_or_else(|e| panic!("{step}: {e}"));
                }
            }
        };
        apply(&mut w, &mut l, &shape);
        check(&l, &shape, "3,000 services");
        shape.insert(10, (0, 6));
        apply(&mut w, &mut l, &shape);
        check(&l, &shape, "service 10 grown to 6 real servers");
        assert_eq!(values(&l)[&1010].cap, 1024);
        shape.insert(10, (2, 2));
        for n in 1000..1500 {
            shape.remove(&n);
        }
        apply(&mut w, &mut l, &shape);
        check(&l, &shape, "service 10 shrunk back, 500 removed");
        for n in 3000..3500 {
            shape.insert(n, ((n % 4) as u8, 2));
        }
        apply(&mut w, &mut l, &shape);
        apply(&mut w, &mut l, &shape);
        check(&l, &shape, "500 added");
        let top = values(&l).values().map(|v| v.base[0] + 2 * v.cap).max().unwrap_or(0);
        assert!(top <= 3500 * 512, "freed regions were reused: the highest region ends at {top}");
    })
    .expect("enter netns")
    .join()
    .expect("test thread");
}
