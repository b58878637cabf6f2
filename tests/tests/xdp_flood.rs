//! Packet-fixture tests of the connection table under a flood, through BPF_PROG_TEST_RUN
//! (`docs/config.md`, "Flood mode"): which way of a full set a new entry takes (unassured
//! first, then the least recently seen; never an assured one in flood mode), and flood mode
//! itself (past `flood_rate` new unassured entries, consistent-hash services record none, the
//! others keep their assured ways). Each case seeds one set of `KA_CONNS4` with ways of chosen
//! states and ages, sends one packet of a new flow of that set, and checks the set after, the
//! verdict and the counters the packet moved.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use aya::maps::Array;
use ka::lb::{writer::MapWriter, BackendSpec, DesiredState, L4Proto, Method, Scheduler, ServiceSpec};
use ka_common::{
    lb::{conn_check, conn_set, conn_hash4, ConnSet4, ConnWay4, FlowKey4, CONN4_MAP},
    sched::{
        is_assured, ConnTimeouts, CONN_F_ASSURED, CONN_S_CLOSE, CONN_S_EST, CONN_S_FIN, CONN_S_SYN, CONN_S_UDP,
        CONN_TIMEOUTS_MAP,
    },
    stats::Counter,
};
use ka_tests::{netns::Netns, packet::Frame};

use common::{Loaded, XDP_TX};

const LB0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const RS: [&str; 3] = ["10.1.0.10", "10.1.0.11", "10.1.0.12"];
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const A: u32 = CONN_F_ASSURED;

/// The services under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Svc {
    /// 198.51.100.1:80 TCP, Maglev (consistent).
    TcpMh,
    /// 198.51.100.2:80 TCP, round-robin.
    TcpRr,
    /// 198.51.100.3:53 UDP, Maglev.
    UdpMh,
    /// 198.51.100.4:53 UDP, round-robin.
    UdpRr,
}

impl Svc {
    fn vip(self) -> [u8; 4] {
        [198, 51, 100, 1 + self as u8]
    }
    fn port(self) -> u16 {
        match self {
            Svc::TcpMh | Svc::TcpRr => 80,
            Svc::UdpMh | Svc::UdpRr => 53,
        }
    }
    fn proto(self) -> u8 {
        match self {
            Svc::TcpMh | Svc::TcpRr => 6,
            Svc::UdpMh | Svc::UdpRr => 17,
        }
    }
    fn spec(self) -> ServiceSpec {
        let (proto, scheduler) = match self {
            Svc::TcpMh => (L4Proto::Tcp, Scheduler::Maglev),
            Svc::TcpRr => (L4Proto::Tcp, Scheduler::RoundRobin),
            Svc::UdpMh => (L4Proto::Udp, Scheduler::Maglev),
            Svc::UdpRr => (L4Proto::Udp, Scheduler::RoundRobin),
        };
        ServiceSpec {
            vip: IpAddr::from(self.vip()),
            port: self.port(),
            proto,
            scheduler,
            persistence: None,
            master_slot: None,
            backends: RS
                .iter()
                .map(|a| BackendSpec {
                    addr: a.parse().expect("address"),
                    port: self.port(),
                    weight: 1,
                    method: Method::Dr,
                    healthy: true,
                    uthreshold: 0,
                    lthreshold: 0,
                })
                .collect(),
            options: Default::default(),
        }
    }
    fn key(self, src: [u8; 4], sport: u16) -> FlowKey4 {
        FlowKey4 { src, dst: self.vip(), sport: sport.to_be_bytes(), dport: self.port().to_be_bytes(), proto: self.proto(), _pad: [0; 3] }
    }
    /// A packet of flow `k` (`flags` for TCP).
    fn packet(self, k: &FlowKey4, flags: u8) -> Vec<u8> {
        let src = Ipv4Addr::from(k.src).to_string();
        let dst = Ipv4Addr::from(self.vip()).to_string();
        let sport = u16::from_be_bytes(k.sport);
        let mut f = if self.proto() == 6 {
            Frame::tcp4(&src, &dst, sport, self.port(), flags)
        } else {
            Frame::udp4(&src, &dst, sport, self.port()).payload(b"q")
        };
        f.eth_dst = LB0_MAC;
        f.eth_src = CLIENT_MAC;
        f.build()
    }
}

/// The new packet of a case.
#[derive(Clone, Copy, Debug)]
enum New {
    /// A TCP SYN of a new flow (unassured).
    Syn,
    /// A TCP ACK of a flow the table does not know (recorded ESTABLISHED: assured).
    Ack,
    /// A first UDP datagram (unassured).
    Udp,
    /// A TCP SYN on the 5-tuple of seeded way `n` (a reused 5-tuple).
    SynOwn(usize),
}

/// What the set holds after the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// The new flow took way `n` (the others unchanged).
    Took(usize),
    /// The new flow is not in the set (the seeded ways unchanged).
    NotRecorded,
}

/// One fixture: a service, the seeded ways (state, age in jiffies; `None`: free), whether the
/// CPU is in flood mode when the packet comes, the packet, the outcome and the counters the
/// packet moved (every other counter but the verdict, parse and forwarding ones stays put).
struct Case {
    name: &'static str,
    svc: Svc,
    ways: [Option<(u32, u32)>; 4],
    flood: bool,
    new: New,
    want: Want,
    counters: &'static [(Counter, u64)],
}

fn cases() -> Vec<Case> {
    use Counter::*;
    let est = |age| Some((CONN_S_EST, age));
    let syn = |age| Some((CONN_S_SYN, age));
    vec![
        Case {
            name: "a SYN takes the set's unassured way, not the older established ones",
            svc: Svc::TcpRr,
            ways: [est(30_000), est(20_000), syn(100), est(25_000)],
            flood: false,
            new: New::Syn,
            want: Want::Took(2),
            counters: &[(LbNewFlow, 1), (LbConnEvicted, 1)],
        },
        Case {
            name: "the oldest of several unassured ways (FIN, CLOSE, SYN) goes first",
            svc: Svc::TcpRr,
            ways: [syn(100), Some((CONN_S_FIN, 5_000)), Some((CONN_S_CLOSE, 3_000)), est(40_000)],
            flood: false,
            new: New::Syn,
            want: Want::Took(1),
            counters: &[(LbNewFlow, 1), (LbConnEvicted, 1)],
        },
        Case {
            name: "a UDP flow seen once goes before older UDP flows seen twice",
            svc: Svc::UdpRr,
            ways: [Some((CONN_S_UDP | A, 30_000)), Some((CONN_S_UDP, 100)), Some((CONN_S_UDP | A, 20_000)), Some((CONN_S_UDP | A, 25_000))],
            flood: false,
            new: New::Udp,
            want: Want::Took(1),
            counters: &[(LbNewFlow, 1), (LbConnEvicted, 1)],
        },
        Case {
            name: "a free way before any eviction",
            svc: Svc::TcpRr,
            ways: [est(30_000), None, syn(40_000), est(25_000)],
            flood: false,
            new: New::Syn,
            want: Want::Took(1),
            counters: &[(LbNewFlow, 1)],
        },
        Case {
            name: "a SYN on a reused 5-tuple takes its own way, even an established one",
            svc: Svc::TcpRr,
            ways: [syn(30_000), est(100), syn(40_000), est(25_000)],
            flood: false,
            new: New::SynOwn(1),
            want: Want::Took(1),
            counters: &[(LbNewFlow, 1)],
        },
        Case {
            name: "outside flood mode a set of assured ways gives up its oldest",
            svc: Svc::TcpRr,
            ways: [est(1_000), est(40_000), Some((CONN_S_UDP | A, 2_000)), est(3_000)],
            flood: false,
            new: New::Syn,
            want: Want::Took(1),
            counters: &[(LbNewFlow, 1), (LbConnEvictedAssured, 1)],
        },
        Case {
            name: "flood mode, round-robin: a set of assured ways keeps them all",
            svc: Svc::TcpRr,
            ways: [est(1_000), est(40_000), Some((CONN_S_UDP | A, 2_000)), est(3_000)],
            flood: true,
            new: New::Syn,
            want: Want::NotRecorded,
            counters: &[(LbNewFlow, 1), (LbConnSetFull, 1)],
        },
        Case {
            name: "flood mode, round-robin UDP: the same for a first datagram",
            svc: Svc::UdpRr,
            ways: [est(1_000), Some((CONN_S_UDP | A, 40_000)), Some((CONN_S_UDP | A, 2_000)), est(3_000)],
            flood: true,
            new: New::Udp,
            want: Want::NotRecorded,
            counters: &[(LbNewFlow, 1), (LbConnSetFull, 1)],
        },
        Case {
            name: "flood mode, round-robin: an unassured way is still replaced",
            svc: Svc::TcpRr,
            ways: [est(1_000), est(40_000), syn(2_000), est(3_000)],
            flood: true,
            new: New::Syn,
            want: Want::Took(2),
            counters: &[(LbNewFlow, 1), (LbConnEvicted, 1)],
        },
        Case {
            name: "flood mode, Maglev: a SYN is forwarded without an entry",
            svc: Svc::TcpMh,
            ways: [syn(1_000), None, syn(2_000), est(3_000)],
            flood: true,
            new: New::Syn,
            want: Want::NotRecorded,
            counters: &[(LbNewFlow, 1), (LbConnFloodSkip, 1)],
        },
        Case {
            name: "flood mode, Maglev UDP: a first datagram is forwarded without an entry",
            svc: Svc::UdpMh,
            ways: [syn(1_000), syn(1_500), syn(2_000), est(3_000)],
            flood: true,
            new: New::Udp,
            want: Want::NotRecorded,
            counters: &[(LbNewFlow, 1), (LbConnFloodSkip, 1)],
        },
        Case {
            name: "flood mode, Maglev: an established flow (first seen by its ACK) is recorded, over an unassured way",
            svc: Svc::TcpMh,
            ways: [est(1_000), syn(100), est(2_000), est(3_000)],
            flood: true,
            new: New::Ack,
            want: Want::Took(1),
            counters: &[(LbNewFlow, 1), (LbConnEvicted, 1)],
        },
    ]
}

/// A namespace with lb0 (10.1.0.1/24, forwarding on) and the three real servers as permanent
/// neighbours: `bpf_fib_lookup` answers, DR packets leave by `XDP_TX` with the server's MAC.
fn lab() -> Netns {
    let ns = Netns::new("fl").expect("netns");
    ns.run(&["ip", "link", "add", "lb0", "address", "02:00:00:00:01:01", "type", "veth", "peer", "name", "lb0p"]).expect("veth");
    ns.run(&["ip", "link", "set", "lb0", "up"]).expect("up");
    ns.run(&["ip", "link", "set", "lb0p", "up"]).expect("up");
    ns.run(&["ip", "addr", "add", "10.1.0.1/24", "dev", "lb0"]).expect("addr");
    ns.run(&["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1"]).expect("sysctl");
    for (i, rs) in RS.iter().enumerate() {
        let mac = format!("02:00:00:00:10:{:02x}", 0x10 + i);
        ns.run(&["ip", "neigh", "replace", rs, "lladdr", &mac, "dev", "lb0", "nud", "permanent"]).expect("neigh");
    }
    ns
}

/// Flows of `svc` from 198.18.0.0/16 whose hash falls in set `set`, `n` of them, skipping
/// those in `not`.
fn flows_in_set(svc: Svc, set: u32, n: usize, not: &[FlowKey4]) -> Vec<FlowKey4> {
    (0..=255u8)
        .flat_map(|x| (0..=255u8).map(move |y| [198, 18, x, y]))
        .flat_map(|a| (1024..1056u16).map(move |p| (a, p)))
        .map(|(a, p)| svc.key(a, p))
        .filter(|k| conn_set(conn_hash4(k)) == set && !not.contains(k))
        .take(n)
        .collect()
}

fn set_of(l: &Loaded, set: u32) -> ConnSet4 {
    let t: Array<_, ConnSet4> = Array::try_from(l.ebpf.map(CONN4_MAP).expect("conn map")).expect("array");
    t.get(&set, 0).expect("set")
}

fn write_set(l: &mut Loaded, set: u32, v: &ConnSet4) {
    let mut t: Array<_, ConnSet4> = Array::try_from(l.ebpf.map_mut(CONN4_MAP).expect("conn map")).expect("array");
    t.set(set, v, 0).expect("write set");
}

/// Lifetimes 0 (nothing expires during a case) and flood mode past `rate` entries in a window
/// far longer than the test.
fn write_flood_rate(l: &mut Loaded, rate: u32) {
    let mut t: Array<_, ConnTimeouts> = Array::try_from(l.ebpf.map_mut(CONN_TIMEOUTS_MAP).expect("timeouts map")).expect("array");
    t.set(0, ConnTimeouts { flood_rate: rate, flood_window: 1 << 30, ..Default::default() }, 0).expect("write timeouts");
}

fn run_case(c: &Case, lb0: u32) -> Vec<String> {
    let mut fails = Vec::new();
    let mut l = Loaded::new();
    let services: Vec<ServiceSpec> = [Svc::TcpMh, Svc::TcpRr, Svc::UdpMh, Svc::UdpRr].iter().map(|s| s.spec()).collect();
    let d = DesiredState { services: services.clone(), ..Default::default() };
    let mut writer = MapWriter::new();
    writer.apply(&mut l.ebpf, &d).expect("apply");
    let spec = c.svc.spec();
    let backend = |i: usize| writer.backend_id(&spec, RS[i].parse().expect("ip"), spec.port, Method::Dr).expect("backend id");
    // The kernel's clock, from a throwaway flow's stamp (its own set).
    let probe = Svc::TcpRr.key([198, 19, 0, 1], 999);
    assert_eq!(l.run_on(&Svc::TcpRr.packet(&probe, SYN), lb0).action, XDP_TX, "{}: probe", c.name);
    let now = set_of(&l, conn_set(conn_hash4(&probe))).ways.iter().map(|w| w.stamp).max().unwrap_or(0);
    assert_ne!(now, 0, "{}: the probe flow is in its set", c.name);
    // Flood mode: rate 2, reached by three more throwaway SYNs (other sets), or rate 1000.
    write_flood_rate(&mut l, if c.flood { 2 } else { 1000 });
    if c.flood {
        for p in 0..3u16 {
            let k = Svc::TcpRr.key([198, 19, 1, 1], 2000 + p);
            assert_eq!(l.run_on(&Svc::TcpRr.packet(&k, SYN), lb0).action, XDP_TX);
        }
        assert_eq!(l.counters()[Counter::LbFloodMode.name()], 1, "{}: the CPU entered flood mode", c.name);
    }
    // The set of the case: its first candidate flow's.
    let first = Svc::TcpRr.key([198, 18, 0, 1], 1024);
    let set = conn_set(conn_hash4(&c.svc.key(first.src, 1024)));
    let flows = flows_in_set(c.svc, set, 5, &[probe]);
    assert_eq!(flows.len(), 5, "{}: five flows of set {set}", c.name);
    let mut seeded = ConnSet4::default();
    for (i, w) in c.ways.iter().enumerate() {
        if let Some((state, age)) = *w {
            let b = backend(i % RS.len());
            seeded.ways[i] = ConnWay4 { key: flows[i], backend: b, check: conn_check(conn_hash4(&flows[i]), b), stamp: now.wrapping_sub(age) | 1, state };
        }
    }
    write_set(&mut l, set, &seeded);
    let newk = match c.new {
        New::SynOwn(i) => flows[i],
        _ => flows[4],
    };
    let flags = match c.new {
        New::Syn | New::SynOwn(_) => SYN,
        New::Ack => ACK,
        New::Udp => 0,
    };
    let before = l.counters();
    let out = l.run_on(&c.svc.packet(&newk, flags), lb0);
    if out.action != XDP_TX {
        fails.push(format!("{}: verdict {} (want XDP_TX)", c.name, out.action));
    }
    let after = l.counters();
    let ignore = |k: &str| {
        k.starts_with("verdict_") || ["ipv4", "tcp", "udp", "lb_dr", "lb_fib_hit", "lb_neigh_hit"].contains(&k)
    };
    for (name, v) in &after {
        if ignore(name) {
            continue;
        }
        let delta = v - before.get(name).copied().unwrap_or(0);
        let want = c.counters.iter().find(|(k, _)| k.name() == *name).map_or(0, |(_, n)| *n);
        if delta != want {
            fails.push(format!("{}: counter {name} moved by {delta}, expected {want}", c.name));
        }
    }
    let got = set_of(&l, set);
    let taken: Vec<usize> = (0..4).filter(|&i| got.ways[i].stamp != 0 && got.ways[i].key == newk).collect();
    let outcome = match taken.as_slice() {
        [] => Want::NotRecorded,
        [i] => Want::Took(*i),
        _ => {
            fails.push(format!("{}: the new flow is in several ways: {got:?}", c.name));
            Want::NotRecorded
        }
    };
    if outcome != c.want {
        fails.push(format!("{}: {outcome:?}, expected {:?}; set after: {got:?}", c.name, c.want));
    }
    // Every other seeded way is as it was.
    for i in 0..4 {
        if Want::Took(i) == c.want {
            let w = &got.ways[i];
            let want_state = match c.new {
                New::Ack => CONN_S_EST,
                New::Udp => CONN_S_UDP,
                _ => CONN_S_SYN,
            };
            if w.state != want_state || is_assured(w.state) != matches!(c.new, New::Ack) {
                fails.push(format!("{}: way {i} state {:#x}, expected {want_state:#x}", c.name, w.state));
            }
            continue;
        }
        if got.ways[i] != seeded.ways[i] {
            fails.push(format!("{}: way {i} changed: {:?} -> {:?}", c.name, seeded.ways[i], got.ways[i]));
        }
    }
    // A flow forwarded without an entry keeps its real server: Maglev answers its next packet
    // the same.
    if c.want == Want::NotRecorded && matches!(c.svc, Svc::TcpMh | Svc::UdpMh) {
        let again = l.run_on(&c.svc.packet(&newk, if c.svc == Svc::TcpMh { ACK } else { 0 }), lb0);
        if again.data.get(..6) != out.data.get(..6) {
            fails.push(format!("{}: next packet to {:02x?}, first to {:02x?}", c.name, again.data.get(..6), out.data.get(..6)));
        }
    }
    fails
}

/// Every case of [`cases`], each on a fresh load.
#[test]
fn conn_table_flood_fixtures() {
    ka_tests::require_root();
    let ns = lab();
    let fails = ns
        .enter(|| {
            let lb0 = nix::net::if_::if_nametoindex("lb0").expect("ifindex");
            cases().iter().flat_map(|c| run_case(c, lb0)).collect::<Vec<_>>()
        })
        .expect("enter netns")
        .join()
        .expect("fixture thread");
    assert!(fails.is_empty(), "{} failures:\n{}", fails.len(), fails.join("\n"));
}

/// A UDP flow's entry becomes assured on its second datagram (and not on its first), so a
/// flood of one-packet flows cannot take its way.
#[test]
fn udp_entry_is_assured_on_its_second_datagram() {
    ka_tests::require_root();
    let ns = lab();
    ns.enter(|| {
        let lb0 = nix::net::if_::if_nametoindex("lb0").expect("ifindex");
        let mut l = Loaded::new();
        let d = DesiredState { services: vec![Svc::UdpRr.spec()], ..Default::default() };
        MapWriter::new().apply(&mut l.ebpf, &d).expect("apply");
        write_flood_rate(&mut l, 1000);
        let k = Svc::UdpRr.key([198, 18, 7, 7], 5353);
        let set = conn_set(conn_hash4(&k));
        let state = |l: &Loaded| set_of(l, set).ways.iter().find(|w| w.stamp != 0 && w.key == k).map(|w| w.state);
        assert_eq!(l.run_on(&Svc::UdpRr.packet(&k, 0), lb0).action, XDP_TX);
        assert_eq!(state(&l), Some(CONN_S_UDP), "first datagram: not assured");
        assert_eq!(l.run_on(&Svc::UdpRr.packet(&k, 0), lb0).action, XDP_TX);
        assert_eq!(state(&l), Some(CONN_S_UDP | CONN_F_ASSURED), "second datagram: assured");
        // A flood of new flows of the same set takes the other ways only.
        for f in flows_in_set(Svc::UdpRr, set, 12, &[k]) {
            assert_eq!(l.run_on(&Svc::UdpRr.packet(&f, 0), lb0).action, XDP_TX);
        }
        assert_eq!(state(&l), Some(CONN_S_UDP | CONN_F_ASSURED), "the assured flow kept its way through 12 new flows");
        let c = l.counters();
        assert_eq!(c[Counter::LbConnEvictedAssured.name()], 0, "{c:?}");
        assert!(c[Counter::LbConnEvicted.name()] >= 9, "the new flows replaced each other: {c:?}");
    })
    .expect("enter netns")
    .join()
    .expect("test thread");
}
