//! Packet-fixture tests of `ka_xdp`'s schedulers with IPVS semantics, connection counts,
//! `uthreshold`/`lthreshold` and entry lifetimes, through BPF_PROG_TEST_RUN. Each case loads
//! the object afresh, applies one DR service through the userspace map writer, seeds the
//! backends' connection counters, sends packets and checks which real server each went to
//! (the destination MAC of the rewritten frame), the counts the datapath kept, and the
//! counters. The namespace's lb0 has a permanent neighbour per real server, so
//! `bpf_fib_lookup` answers and every forwarded frame leaves with `XDP_TX`.

mod common;

use std::time::Duration;

use aya::maps::Array;
use ka::lb::{
    conns::Sweeper,
    writer::MapWriter,
    BackendSpec, DesiredState, L4Proto, Method, Scheduler, ServiceSpec,
};
use ka_common::{
    sched::{BackendConns, ConnTimeouts, BACKEND_CONNS_MAP, SWEEP_PROGRAM},
    stats::Counter,
};
use ka_tests::{netns::Netns, packet::Frame};

use common::{XDP_PASS, XDP_TX};

const VIP: &str = "198.51.100.1";
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;
/// Real servers 10.1.0.11..=10.1.0.20, MAC 02:00:00:00:10:NN.
const SERVERS: u8 = 10;

fn server(i: usize) -> String {
    format!("10.1.0.{}", 11 + i)
}

fn mac(i: usize) -> [u8; 6] {
    [0x02, 0, 0, 0, 0x10, 0x11 + i as u8]
}

/// The lab: lb0 (10.1.0.1/24) with a permanent neighbour for each real server.
fn lab() -> Netns {
    let ns = Netns::new("sch").expect("netns");
    let mut cmds: Vec<Vec<String>> = [
        "ip link add lb0 address 02:00:00:00:01:01 type veth peer name lb0p",
        "ip link set lb0 up",
        "ip link set lb0p up",
        "ip addr add 10.1.0.1/24 dev lb0",
        "sysctl -qw net.ipv4.conf.all.forwarding=1",
    ]
    .iter()
    .map(|c| c.split(' ').map(str::to_owned).collect())
    .collect();
    for i in 0..usize::from(SERVERS) {
        let m = mac(i).iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        cmds.push(["ip", "neigh", "replace", &server(i), "lladdr", &m, "dev", "lb0", "nud", "permanent"].map(str::to_owned).to_vec());
    }
    for c in &cmds {
        let c: Vec<&str> = c.iter().map(String::as_str).collect();
        ns.run(&c).unwrap_or_else(|e| panic!("{c:?}: {e:#}"));
    }
    ns
}

/// A real server of the case: weight, uthreshold, lthreshold.
#[derive(Clone, Copy)]
struct Rs {
    weight: u32,
    uthreshold: u32,
    lthreshold: u32,
}

const fn rs(weight: u32) -> Rs {
    Rs { weight, uthreshold: 0, lthreshold: 0 }
}

fn service(sched: Scheduler, proto: L4Proto, servers: &[Rs]) -> ServiceSpec {
    ServiceSpec {
        vip: VIP.parse().expect("vip"),
        port: 80,
        proto,
        scheduler: sched,
        persistence: None,
        master_slot: None,
        backends: servers
            .iter()
            .enumerate()
            .map(|(i, r)| BackendSpec {
                addr: server(i).parse().expect("rs"),
                port: 80,
                weight: r.weight,
                method: Method::Dr,
                healthy: true,
                uthreshold: r.uthreshold,
                lthreshold: r.lthreshold,
            })
            .collect(),
        options: Default::default(),
    }
}

/// One loaded datapath serving one service.
struct Dp {
    loaded: common::Loaded,
    writer: MapWriter,
    spec: ServiceSpec,
    lb0: u32,
}

impl Dp {
    fn new(spec: ServiceSpec) -> Dp {
        let lb0 = nix::net::if_::if_nametoindex("lb0").expect("lb0");
        let mut loaded = common::Loaded::new();
        loaded.load_also(SWEEP_PROGRAM);
        let mut writer = MapWriter::new();
        writer.apply(&mut loaded.ebpf, &DesiredState { services: vec![spec.clone()], ..Default::default() }).expect("apply");
        Dp { loaded, writer, spec, lb0 }
    }

    fn id(&self, i: usize) -> u32 {
        let b = &self.spec.backends[i];
        self.writer.backend_id(&self.spec, b.addr, b.port, b.method).expect("backend id")
    }

    /// Sets the counts of real server `i` (active, inactive, overloaded).
    fn seed(&mut self, i: usize, active: u32, inactive: u32, overloaded: u32) {
        let id = self.id(i);
        let mut a: Array<_, BackendConns> = Array::try_from(self.loaded.ebpf.map_mut(BACKEND_CONNS_MAP).expect("map")).expect("array");
        a.set(id, BackendConns { active, inactive, overloaded, _pad: 0 }, 0).expect("seed");
    }

    /// The counts of real server `i`.
    fn counts(&self, i: usize) -> (u32, u32, u32) {
        let c = self.writer.conn_counts(self.id(i)).expect("counters mapped");
        (c.active, c.inactive, c.overloaded)
    }

    /// Sends a frame; the real server it went to (by MAC), `None` when passed.
    fn send(&self, f: &Frame) -> Option<usize> {
        let out = self.loaded.run_on(&f.build(), self.lb0);
        if out.action == XDP_PASS {
            return None;
        }
        assert_eq!(out.action, XDP_TX, "forwarded frames leave on lb0");
        let m: [u8; 6] = out.data[0..6].try_into().expect("mac");
        Some((0..usize::from(SERVERS)).find(|&i| mac(i) == m).unwrap_or_else(|| panic!("unknown MAC {m:02x?}")))
    }

    fn syn(&self, client: u16) -> Option<usize> {
        self.send(&Frame::tcp4(&format!("198.18.0.{}", client % 250 + 1), VIP, 10_000 + client, 80, SYN))
    }

    fn counter(&self, c: Counter) -> u64 {
        self.loaded.counters()[c.name()]
    }

    fn sweeper(&self) -> Sweeper {
        Sweeper::new(&self.loaded.ebpf).expect("sweeper")
    }
}

/// Runs `f` inside the lab namespace.
fn in_lab<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    ka_tests::require_root();
    let ns = lab();
    let h = ns.enter(f).expect("enter netns");
    h.join().expect("test thread")
}

/// A scheduler case: real servers and their seeded counts (active, inactive, overloaded);
/// the server a new connection must go to, or none.
struct SchedCase {
    name: &'static str,
    sched: Scheduler,
    servers: Vec<(Rs, u32, u32, u32)>,
    expected: Option<usize>,
}

/// Every least-connection scheduler chooses as its IPVS namesake on the counts it finds,
/// and the new connection is counted (inactive, on its server).
#[test]
fn schedulers_choose_on_connection_counts() {
    use Scheduler::*;
    let cases = vec![
        SchedCase { name: "lc: fewest active*256+inactive", sched: LeastConn, servers: vec![(rs(1), 1, 0, 0), (rs(9), 0, 255, 0), (rs(1), 0, 200, 0)], expected: Some(2) },
        SchedCase { name: "wlc: fewest per weight", sched: WeightedLeastConn, servers: vec![(rs(1), 2, 0, 0), (rs(3), 5, 0, 0)], expected: Some(1) },
        SchedCase { name: "wlc: 11 held connections lose to an idle server", sched: WeightedLeastConn, servers: vec![(rs(1), 11, 0, 0), (rs(1), 0, 3, 0)], expected: Some(1) },
        SchedCase { name: "wlc: an overloaded server is skipped", sched: WeightedLeastConn, servers: vec![(rs(1), 0, 0, 1), (rs(1), 9, 0, 0)], expected: Some(1) },
        SchedCase { name: "wlc: every server overloaded: passed", sched: WeightedLeastConn, servers: vec![(rs(1), 0, 0, 1), (rs(1), 0, 0, 1)], expected: None },
        SchedCase { name: "sed: (active+1)/weight, inactive ignored", sched: ShortestExpectedDelay, servers: vec![(rs(1), 0, 1000, 0), (rs(3), 1, 0, 0)], expected: Some(1) },
        SchedCase { name: "nq: an idle server first", sched: NeverQueue, servers: vec![(rs(5), 1, 0, 0), (rs(1), 0, 40, 0)], expected: Some(1) },
        SchedCase { name: "nq: else sed", sched: NeverQueue, servers: vec![(rs(1), 1, 0, 0), (rs(3), 2, 0, 0)], expected: Some(1) },
        SchedCase { name: "fo: the highest weight, whatever its load", sched: FailOver, servers: vec![(rs(2), 0, 0, 0), (rs(5), 100, 0, 0)], expected: Some(1) },
        SchedCase { name: "ovf: highest weight within its weight", sched: Overflow, servers: vec![(rs(2), 0, 0, 0), (rs(5), 5, 0, 0)], expected: Some(1) },
        SchedCase { name: "ovf: overflows to the next", sched: Overflow, servers: vec![(rs(2), 0, 0, 0), (rs(5), 6, 0, 0)], expected: Some(0) },
        SchedCase { name: "twos: never the overloaded one", sched: TwoChoices, servers: vec![(rs(1), 0, 0, 1), (rs(1), 50, 0, 0)], expected: Some(1) },
        SchedCase { name: "lblc: a new destination goes by wlc", sched: LocalityLeastConn, servers: vec![(rs(1), 3, 0, 0), (rs(1), 1, 0, 0)], expected: Some(1) },
        SchedCase { name: "lblcr: a new destination goes by wlc", sched: LocalityLeastConnReplicated, servers: vec![(rs(1), 1, 0, 0), (rs(1), 3, 0, 0)], expected: Some(0) },
    ];
    let failures = in_lab(move || {
        let mut failures = Vec::new();
        for c in cases {
            let rss: Vec<Rs> = c.servers.iter().map(|s| s.0).collect();
            let mut dp = Dp::new(service(c.sched, L4Proto::Tcp, &rss));
            for (i, s) in c.servers.iter().enumerate() {
                dp.seed(i, s.1, s.2, s.3);
            }
            let got = dp.syn(1);
            if got != c.expected {
                failures.push(format!("{}: went to {got:?}, expected {:?}", c.name, c.expected));
                continue;
            }
            let (new, pass) = (dp.counter(Counter::LbNewFlow), dp.counter(Counter::PassNoBackend));
            match got {
                Some(i) => {
                    let (a, n, _) = dp.counts(i);
                    let seeded = &c.servers[i];
                    if (a, n) != (seeded.1, seeded.2 + 1) || (new, pass) != (1, 0) {
                        failures.push(format!("{}: counts of {i} {:?}, new {new}, passed {pass}", c.name, (a, n)));
                    }
                }
                None if (new, pass) != (0, 1) => failures.push(format!("{}: new {new}, passed {pass}", c.name)),
                None => {}
            }
        }
        failures
    });
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// wlc spreads new connections by the counts it keeps itself: a server already holding 11
/// established connections gets none of 40 new ones while the other catches up (IPVS sends
/// them all to the other server: 40 inactive weigh less than 11 active).
#[test]
fn wlc_counts_its_own_new_connections() {
    let per_server = in_lab(|| {
        let mut dp = Dp::new(service(Scheduler::WeightedLeastConn, L4Proto::Tcp, &[rs(1), rs(1)]));
        dp.seed(0, 11, 0, 0);
        let mut per = [0usize; 2];
        for c in 0..40 {
            per[dp.syn(c).expect("forwarded")] += 1;
        }
        assert_eq!(dp.counts(1), (0, 40, 0), "40 new connections counted on the idle server");
        per
    });
    assert_eq!(per_server, [0, 40]);
}

/// wlc between equal servers alternates as the counts grow; twos balances too.
#[test]
fn least_connection_balances_equal_servers() {
    let (wlc, twos) = in_lab(|| {
        let run = |sched| {
            let dp = Dp::new(service(sched, L4Proto::Tcp, &[rs(1), rs(1), rs(1)]));
            let mut per = [0usize; 3];
            for c in 0..90 {
                per[dp.syn(c).expect("forwarded")] += 1;
            }
            per
        };
        (run(Scheduler::WeightedLeastConn), run(Scheduler::TwoChoices))
    });
    assert_eq!(wlc, [30, 30, 30], "wlc: strictly by count");
    assert!(twos.iter().all(|&n| (20..=40).contains(&n)), "twos balances: {twos:?}");
}

/// TCP states move the counts as IPVS does: SYN inactive, the client's ACK active, its FIN
/// inactive again; UDP flows are inactive.
#[test]
fn tcp_states_move_counts() {
    in_lab(|| {
        let dp = Dp::new(service(Scheduler::LeastConn, L4Proto::Tcp, &[rs(1)]));
        let f = |flags| Frame::tcp4("198.18.0.1", VIP, 40000, 80, flags);
        assert_eq!(dp.send(&f(SYN)), Some(0));
        assert_eq!(dp.counts(0), (0, 1, 0), "after the SYN");
        assert_eq!(dp.send(&f(ACK)), Some(0));
        assert_eq!(dp.counts(0), (1, 0, 0), "after the ACK: established");
        assert_eq!(dp.send(&f(ACK)), Some(0));
        assert_eq!(dp.counts(0), (1, 0, 0), "data does not count twice");
        assert_eq!(dp.send(&f(FIN | ACK)), Some(0));
        assert_eq!(dp.counts(0), (0, 1, 0), "after the FIN");
        // A new SYN on the same 5-tuple is a new connection: the old entry leaves the counts.
        assert_eq!(dp.send(&f(SYN)), Some(0));
        assert_eq!(dp.counts(0), (0, 1, 0), "reopened");
        assert_eq!((dp.counter(Counter::LbNewFlow), dp.counter(Counter::LbConnHit)), (2, 3));
        let udp = Dp::new(service(Scheduler::LeastConn, L4Proto::Udp, &[rs(1)]));
        assert_eq!(udp.send(&Frame::udp4("198.18.0.1", VIP, 40000, 80).payload(b"q")), Some(0));
        assert_eq!(udp.send(&Frame::udp4("198.18.0.1", VIP, 40000, 80).payload(b"q")), Some(0));
        assert_eq!(udp.counts(0), (0, 1, 0), "a UDP flow is one inactive connection");
    });
}

/// uthreshold: a server reaching it gets no new connection until it is below lthreshold
/// (the sweeper expiring its entries); rr passes over it, mh finds no server.
#[test]
fn thresholds_stop_and_resume_new_connections() {
    in_lab(|| {
        let limited = Rs { weight: 1, uthreshold: 2, lthreshold: 1 };
        // wlc: server 0 takes 2, is overloaded, server 1 takes the rest.
        let dp = Dp::new(service(Scheduler::WeightedLeastConn, L4Proto::Udp, &[limited, rs(1)]));
        let mut per = [0usize; 2];
        for c in 0..6 {
            let f = Frame::udp4(&format!("198.18.0.{}", c + 1), VIP, 40000, 80).payload(b"q");
            per[dp.send(&f).expect("forwarded")] += 1;
        }
        assert_eq!(per, [2, 4], "2 flows reach uthreshold 2");
        assert_eq!(dp.counts(0), (0, 2, 1), "server 0 overloaded");
        // The flows leave (UDP lifetime of 1 jiffy): below lthreshold, it takes flows again.
        let sw = dp.sweeper();
        sw.set_timeouts(&ConnTimeouts { udp: 1, tcp: 1, tcp_fin: 1, syn: 1, close: 1, lblc: 0, ..Default::default() }).expect("timeouts");
        ka_tests::wait_for("the sweeper expiring every flow", Duration::from_secs(5), || {
            sw.sweep_all().expect("sweep");
            (dp.counts(0) == (0, 0, 0) && dp.counts(1) == (0, 0, 0)).then_some(())
        });
        sw.set_timeouts(&ConnTimeouts::default()).expect("timeouts");
        let f = Frame::udp4("198.18.1.1", VIP, 40000, 80).payload(b"q");
        assert_eq!(dp.send(&f), Some(0), "no longer overloaded: the first server again");

        // rr: the overloaded server's turn passes to the next.
        let mut dp = Dp::new(service(Scheduler::RoundRobin, L4Proto::Tcp, &[limited, rs(1)]));
        dp.seed(0, 0, 2, 1);
        let got: Vec<Option<usize>> = (0..4).map(|c| dp.syn(c)).collect();
        assert_eq!(got, vec![Some(1); 4], "rr skips the overloaded server");
        assert!(dp.counter(Counter::LbOverloaded) >= 2, "skips counted");

        // mh: an overloaded server's flows find no server (IPVS without mh-fallback).
        let mut dp = Dp::new(service(Scheduler::Maglev, L4Proto::Tcp, &[limited]));
        dp.seed(0, 0, 2, 1);
        assert_eq!(dp.syn(1), None, "passed");
        assert_eq!((dp.counter(Counter::LbOverloaded), dp.counter(Counter::PassNoBackend)), (1, 1));
    });
}

/// Entry lifetimes by state (lvs_timeouts): an established TCP entry outlives a short FIN
/// lifetime; after its FIN it expires, leaves the counts, and its next packet is a new flow.
#[test]
fn lifetimes_follow_tcp_state() {
    in_lab(|| {
        let dp = Dp::new(service(Scheduler::WeightedLeastConn, L4Proto::Tcp, &[rs(1)]));
        let sw = dp.sweeper();
        // Established entries live long, FIN ones one jiffy.
        sw.set_timeouts(&ConnTimeouts { tcp: 1_000_000, tcp_fin: 1, udp: 1_000_000, syn: 1_000_000, close: 1, lblc: 0, ..Default::default() }).expect("timeouts");
        let f = |port, flags| Frame::tcp4("198.18.0.1", VIP, port, 80, flags);
        for port in [40000, 40001] {
            dp.send(&f(port, SYN)).expect("forwarded");
            dp.send(&f(port, ACK)).expect("forwarded");
        }
        dp.send(&f(40001, FIN | ACK)).expect("forwarded");
        assert_eq!(dp.counts(0), (1, 1, 0));
        ka_tests::wait_for("the FIN entry to expire", Duration::from_secs(5), || {
            sw.sweep_all().expect("sweep");
            (dp.counts(0) == (1, 0, 0)).then_some(())
        });
        // The established one is still there: its next packet is a hit.
        let hits = dp.counter(Counter::LbConnHit);
        dp.send(&f(40000, ACK)).expect("forwarded");
        assert_eq!(dp.counter(Counter::LbConnHit), hits + 1, "established entry kept");
        // A packet finding an expired entry (before a sweep): counted, scheduled anew.
        dp.send(&f(40000, FIN | ACK)).expect("forwarded");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let expired = dp.counter(Counter::LbConnExpired);
            dp.send(&f(40000, ACK)).expect("forwarded");
            if dp.counter(Counter::LbConnExpired) > expired {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the FIN entry never expired on lookup");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(dp.counts(0), (1, 0, 0), "the expired entry left the counts; the ACK opened an established one");
    });
}

/// lblc keeps a destination on its server while it is not overloaded (IPVS sense: more
/// active than its weight while another is below half); lblcr then adds a server to the
/// destination's set instead of moving it.
#[test]
fn locality_schedulers_keep_destinations() {
    in_lab(|| {
        for sched in [Scheduler::LocalityLeastConn, Scheduler::LocalityLeastConnReplicated] {
            let mut dp = Dp::new(service(sched, L4Proto::Tcp, &[rs(4), rs(4)]));
            let first = dp.syn(1).expect("forwarded");
            let other = 1 - first;
            // Busier than the other server, but not overloaded: the destination stays.
            dp.seed(first, 4, 0, 0);
            dp.seed(other, 3, 0, 0);
            assert_eq!(dp.syn(2), Some(first), "{sched:?}: the cached server");
            // More active than its weight while the other is below half its weight.
            dp.seed(first, 5, 0, 0);
            dp.seed(other, 1, 0, 0);
            assert_eq!(dp.syn(3), Some(other), "{sched:?}: overloaded: wlc");
            // lblc moved the destination; lblcr grew its set: with both loads back to equal,
            // lblcr picks the set's least loaded.
            dp.seed(first, 1, 0, 0);
            dp.seed(other, 2, 0, 0);
            let want = if sched == Scheduler::LocalityLeastConn { other } else { first };
            assert_eq!(dp.syn(4), Some(want), "{sched:?}: after the move");
        }
    });
}

/// Persistence with wlc: a client's first connection is scheduled by wlc and recorded; its
/// next ones follow the template, as IPVS (templates ignore the counts), and are counted.
#[test]
fn persistence_follows_the_template_under_wlc() {
    in_lab(|| {
        let mut spec = service(Scheduler::WeightedLeastConn, L4Proto::Tcp, &[rs(1), rs(1)]);
        spec.persistence = Some(ka::lb::Persistence { timeout: Duration::from_secs(60), prefix_len: 32 });
        let mut dp = Dp::new(spec);
        dp.seed(0, 3, 0, 0);
        let f = |port| Frame::tcp4("198.18.0.7", VIP, port, 80, SYN);
        assert_eq!(dp.send(&f(40000)), Some(1), "wlc: the idle server");
        // Now server 1 is the busier one: the client still goes there.
        dp.seed(1, 9, 0, 0);
        assert_eq!(dp.send(&f(40001)), Some(1), "the template wins over the counts");
        assert_eq!(dp.counts(1), (9, 1, 0), "counted on the template's server");
        assert_eq!(dp.send(&Frame::tcp4("198.18.0.8", VIP, 40000, 80, SYN)), Some(0), "another client: wlc");
        assert_eq!((dp.counter(Counter::LbNewFlow), dp.counter(Counter::LbPersistHit)), (2, 1));
    });
}
