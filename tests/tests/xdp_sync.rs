//! Connection sync in the datapath, through BPF_PROG_TEST_RUN: while `G_SYNC_MASTER` is set,
//! `ka_xdp` queues each new flow with its backend on the sync ring (and nothing otherwise);
//! on a BACKUP, `ka_sync_install` writes what a MASTER sent (decoded and mapped to local
//! backends by the userspace index) so that the flow's next packet finds it: a connection
//! entry that beats the round-robin scheduler, a NAT reverse entry that translates replies,
//! a persistence template that sends the client's new flows to the same real server. Each case
//! runs on freshly loaded maps inside a namespace whose routes and permanent neighbours give
//! `bpf_fib_lookup` answers; the real server a packet went to is read from its destination MAC.

mod common;

use std::{net::IpAddr, time::Duration};

use ka::lb::{
    sync::{
        index::Timeouts,
        install::{set_master_flag, Installer, SyncRing},
        refresh::{Refresher, REFRESH_PERIOD, STEP_EVERY},
        wire::{flags, state, Conn},
        SyncIndex,
    },
    writer::MapWriter,
    BackendSpec, DesiredState, L4Proto, Method, Persistence, Scheduler, ServiceSpec,
};
use ka_common::{
    lb::{CONN4_MAP, CONN6_MAP},
    stats::Counter,
    sync::{SyncEvent, SyncInstall, SYNC_INSTALL_CONN},
};
use ka_tests::{netns::Netns, packet::Frame};

const RS1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x10, 0x10];
const RS2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x11, 0x11];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xfe, 0xfe];
const CLIENT: &str = "198.18.0.1";
const CLIENT6: &str = "2001:db8:c::1";
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// lb0 (10.1.0.1/24, fd00:1::1/64) with real servers .10 and .11 (::10, ::11) and the default
/// gateway .254 (::fe), all permanent neighbours.
fn lab() -> Netns {
    let ns = Netns::new("sy").expect("netns");
    let cmds: &[&str] = &[
        "ip link add lb0 address 02:00:00:00:01:01 type veth peer name lb0p",
        "ip link set lb0 up",
        "ip link set lb0p up",
        "ip addr add 10.1.0.1/24 dev lb0",
        "ip addr add fd00:1::1/64 dev lb0 nodad",
        "sysctl -qw net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1",
        "ip neigh replace 10.1.0.10 lladdr 02:00:00:00:10:10 dev lb0 nud permanent",
        "ip neigh replace 10.1.0.11 lladdr 02:00:00:00:11:11 dev lb0 nud permanent",
        "ip neigh replace 10.1.0.254 lladdr 02:00:00:00:fe:fe dev lb0 nud permanent",
        "ip neigh replace fd00:1::10 lladdr 02:00:00:00:10:10 dev lb0 nud permanent",
        "ip neigh replace fd00:1::11 lladdr 02:00:00:00:11:11 dev lb0 nud permanent",
        "ip route add default via 10.1.0.254 dev lb0",
    ];
    for c in cmds {
        let argv: Vec<&str> = c.split(' ').collect();
        ns.run(&argv).unwrap_or_else(|e| panic!("{c}: {e:#}"));
    }
    ns
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// A round-robin TCP service over `rs` (real-server port `rport`).
fn svc(vip: &str, rs: [&str; 2], rport: u16, method: Method) -> ServiceSpec {
    ServiceSpec {
        vip: ip(vip),
        port: 80,
        proto: L4Proto::Tcp,
        scheduler: Scheduler::RoundRobin,
        persistence: None,
        master_slot: None,
        backends: rs.iter().map(|a| BackendSpec { addr: ip(a), port: rport, weight: 1, method, healthy: true, uthreshold: 0, lthreshold: 0 }).collect(),
        options: Default::default(),
    }
}

const DR: &str = "198.51.100.1";
const NAT: &str = "198.51.100.4";
const PERSIST: &str = "198.51.100.5";
const DR6: &str = "2001:db8::1";

fn desired() -> DesiredState {
    let rs = ["10.1.0.10", "10.1.0.11"];
    let mut persist = svc(PERSIST, rs, 80, Method::Dr);
    persist.persistence = Some(Persistence { timeout: Duration::from_secs(300), prefix_len: 24 });
    DesiredState {
        services: vec![
            svc(DR, rs, 80, Method::Dr),
            svc(NAT, rs, 8080, Method::Nat),
            persist,
            svc(DR6, ["fd00:1::10", "fd00:1::11"], 80, Method::Dr),
        ],
        ..Default::default()
    }
}

/// What a MASTER sends for a connection of `client:cport` to `vip:80` on real server `rs`.
fn conn(client: &str, cport: u16, vip: &str, rs: &str, rport: u16, method: u32) -> Conn {
    Conn {
        protocol: 6,
        flags: method,
        state: state::TCP_ESTABLISHED,
        cport,
        vport: 80,
        dport: rport,
        fwmark: 0,
        timeout: 900,
        caddr: ip(client),
        vaddr: ip(vip),
        daddr: ip(rs),
        params: vec![],
    }
}

/// One load of the object in the lab: maps seeded by the map writer, the install program
/// loaded, the index of the applied tables.
struct Director {
    loaded: common::Loaded,
    index: SyncIndex,
    installer: Installer,
    lb0: u32,
}

impl Director {
    fn new() -> Director {
        let mut loaded = common::Loaded::new();
        let d = desired();
        let mut writer = MapWriter::new();
        writer.apply(&mut loaded.ebpf, &d).expect("apply");
        let index = SyncIndex::build(&d, &writer);
        let installer = Installer::load(&mut loaded.ebpf).expect("the verifier accepts ka_sync_install");
        let lb0 = nix::net::if_::if_nametoindex("lb0").expect("ifindex");
        Director { loaded, index, installer, lb0 }
    }

    /// Installs what a MASTER sent, as the BACKUP's task does.
    fn install(&mut self, conns: &[Conn]) {
        let recs: Vec<SyncInstall> = conns.iter().map(|c| self.index.incoming(c).expect("installable")).collect();
        self.installer.install(&recs).expect("install run");
    }

    /// Runs a frame in on lb0: (action, destination MAC, frame out).
    fn run(&self, f: Frame) -> (u32, [u8; 6], Vec<u8>) {
        let out = self.loaded.run_on(&f.build(), self.lb0);
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&out.data[..6]);
        (out.action, mac, out.data)
    }

    fn counter(&self, c: Counter) -> u64 {
        self.loaded.counters()[c.name()]
    }
}

/// Runs `f` in the lab's namespace on a thread pinned to CPU 0 (the round-robin cursor and the
/// scratch memory are per CPU).
fn in_lab<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    ka_tests::require_root();
    let ns = lab();
    let h = ns
        .enter(move || {
            common::pin_to_cpu0();
            f()
        })
        .expect("enter netns");
    h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Without the flag no flow is queued; with it, each new flow once, with the backend it got,
/// and the sender names that backend by address and port.
#[test]
fn master_queues_each_new_flow_once() {
    in_lab(|| {
        let mut d = Director::new();
        d.run(Frame::tcp4(CLIENT, DR, 40000, 80, SYN));
        let mut ring = SyncRing::take(&mut d.loaded.ebpf).expect("ring");
        let mut evs: Vec<SyncEvent> = Vec::new();
        assert_eq!((ring.drain(&mut evs, 100), d.counter(Counter::SyncEvent)), (0, 0), "sync off: nothing queued");

        set_master_flag(&mut d.loaded.ebpf, true).expect("flag");
        let (_, first, _) = d.run(Frame::tcp4(CLIENT, DR, 40001, 80, SYN));
        d.run(Frame::tcp4(CLIENT, DR, 40001, 80, ACK));
        d.run(Frame::tcp4(CLIENT, DR, 40001, 80, ACK));
        let (_, second, _) = d.run(Frame::tcp4(CLIENT, DR, 40002, 80, SYN));
        assert_eq!(ring.drain(&mut evs, 100), 2, "two new flows, two events (established packets add none)");
        assert_eq!((d.counter(Counter::SyncEvent), d.counter(Counter::SyncEventLost)), (2, 0));
        let named: Vec<(u16, IpAddr)> = evs
            .iter()
            .map(|e| {
                let (c, tmpl) = d.index.outgoing(e, Timeouts::default()).expect("a known backend");
                assert_eq!(tmpl, None);
                (c.cport, c.daddr)
            })
            .collect();
        let by_mac = |m: [u8; 6]| if m == RS1_MAC { ip("10.1.0.10") } else { ip("10.1.0.11") };
        assert_eq!(named, vec![(40001, by_mac(first)), (40002, by_mac(second))], "each event names the real server the flow went to");
        assert_ne!(first, second, "round robin alternates");

        set_master_flag(&mut d.loaded.ebpf, false).expect("flag");
        d.run(Frame::tcp4(CLIENT, DR, 40003, 80, SYN));
        assert_eq!(ring.drain(&mut evs, 100), 0, "flag cleared: nothing queued");
    });
}

/// An installed connection decides where the flow's next packet goes, not the scheduler: the
/// BACKUP that takes over keeps the MASTER's choice. A flow not installed is scheduled anew.
#[test]
fn installed_connections_beat_the_scheduler() {
    in_lab(|| {
        let mut d = Director::new();
        // Round robin from a fresh cursor gives .10 first: install flows on .11.
        d.install(&[
            conn(CLIENT, 40000, DR, "10.1.0.11", 80, flags::DROUTE),
            conn(CLIENT6, 40000, DR6, "fd00:1::11", 80, flags::DROUTE),
        ]);
        assert_eq!(d.counter(Counter::SyncInstalled), 2);
        let (action, mac, _) = d.run(Frame::tcp4(CLIENT, DR, 40000, 80, ACK));
        assert_eq!((action, mac), (common::XDP_TX, RS2_MAC), "installed IPv4 flow");
        let (action, mac, _) = d.run(Frame::tcp6(CLIENT6, DR6, 40000, 80, ACK));
        assert_eq!((action, mac), (common::XDP_TX, RS2_MAC), "installed IPv6 flow");
        assert_eq!((d.counter(Counter::LbConnHit), d.counter(Counter::LbNewFlow)), (2, 0));
        let (_, mac, _) = d.run(Frame::tcp4(CLIENT, DR, 40009, 80, ACK));
        assert_eq!(mac, RS1_MAC, "a flow nobody installed is scheduled by round robin");
    });
}

/// A NAT connection installed from the MASTER's entry: the client's packets are translated to
/// the real server it was on, and that server's replies back to the VIP.
#[test]
fn installed_nat_connections_translate_both_ways() {
    in_lab(|| {
        let mut d = Director::new();
        d.install(&[conn(CLIENT, 40000, NAT, "10.1.0.11", 8080, flags::MASQ)]);
        let (action, mac, out) = d.run(Frame::tcp4(CLIENT, NAT, 40000, 80, ACK));
        assert_eq!((action, mac), (common::XDP_TX, RS2_MAC));
        assert_eq!((&out[30..34], &out[36..38]), (&[10, 1, 0, 11][..], &8080u16.to_be_bytes()[..]), "destination rewritten to 10.1.0.11:8080");
        let (action, mac, out) = d.run(Frame::tcp4("10.1.0.11", CLIENT, 8080, 40000, ACK));
        assert_eq!((action, mac), (common::XDP_TX, GW_MAC), "the reply goes to the client");
        assert_eq!((&out[26..30], &out[34..36]), (&[198, 51, 100, 4][..], &80u16.to_be_bytes()[..]), "source translated back to the VIP");
        assert_eq!(d.counter(Counter::LbNatReply), 1);
    });
}

/// A persistence template from the MASTER sends the client's new connections (any port, any
/// host of its /24) to the same real server.
#[test]
fn installed_templates_keep_client_affinity() {
    in_lab(|| {
        let mut d = Director::new();
        let tmpl = Conn { flags: flags::TEMPLATE | flags::DROUTE, state: 0, cport: 0, timeout: 300, ..conn("198.18.0.0", 0, PERSIST, "10.1.0.11", 80, 0) };
        d.install(&[tmpl]);
        for (client, port) in [("198.18.0.7", 41000), ("198.18.0.8", 41001), ("198.18.0.7", 41002)] {
            let (_, mac, _) = d.run(Frame::tcp4(client, PERSIST, port, 80, SYN));
            assert_eq!(mac, RS2_MAC, "{client}:{port}");
        }
        assert_eq!(d.counter(Counter::LbPersistHit), 3);
    });
}

/// Records the install program refuses (an unused backend id, one of the other family, an
/// unknown kind) are counted and change nothing; a batch longer than one run is installed
/// whole.
#[test]
fn bad_records_are_counted_and_batches_split() {
    in_lab(|| {
        let mut d = Director::new();
        let good = d.index.incoming(&conn(CLIENT, 40000, DR, "10.1.0.11", 80, flags::DROUTE)).expect("installable");
        let v6 = d.index.incoming(&conn(CLIENT6, 40000, DR6, "fd00:1::11", 80, flags::DROUTE)).expect("installable");
        let bad = [
            SyncInstall { backend: 4000, ..good },
            SyncInstall { backend: v6.backend, ..good },
            SyncInstall { kind: 9, ..good },
            SyncInstall { key: ka_common::lb::FlowKey { family: 0, ..good.key }, ..good },
        ];
        d.installer.install(&bad).expect("run");
        assert_eq!((d.counter(Counter::SyncInstallBad), d.counter(Counter::SyncInstalled)), (4, 0));
        let (_, mac, _) = d.run(Frame::tcp4(CLIENT, DR, 40000, 80, ACK));
        assert_eq!(mac, RS1_MAC, "nothing installed: round robin's first choice");

        let mut d = Director::new();
        let many: Vec<SyncInstall> = (0..70u16)
            .map(|i| {
                let mut r = good;
                r.key.sport = (50000 + i).to_be_bytes();
                r.kind = SYNC_INSTALL_CONN;
                r
            })
            .collect();
        d.installer.install(&many).expect("runs");
        assert_eq!(d.counter(Counter::SyncInstalled), 70, "70 records in three runs");
        for i in [0u16, 31, 32, 69] {
            let (_, mac, _) = d.run(Frame::tcp4(CLIENT, DR, 50000 + i, 80, ACK));
            assert_eq!(mac, RS2_MAC, "flow {i}");
        }
    });
}

/// The MASTER's refresh walks its connection tables and re-announces the connections that saw
/// traffic since its previous pass: every live one on the first pass, none when nothing moved,
/// then exactly the one that carried a packet.
#[test]
fn refresh_reannounces_active_connections() {
    in_lab(|| {
        let mut d = Director::new();
        d.install(&[
            conn(CLIENT, 40000, DR, "10.1.0.11", 80, flags::DROUTE),
            conn(CLIENT, 40001, NAT, "10.1.0.10", 8080, flags::MASQ),
            conn(CLIENT6, 40002, DR6, "fd00:1::11", 80, flags::DROUTE),
        ]);
        let v4 = d.loaded.ebpf.take_map(CONN4_MAP).expect("KA_CONNS4");
        let v6 = d.loaded.ebpf.take_map(CONN6_MAP).expect("KA_CONNS6");
        let mut r = Refresher::from_maps(v4, v6).expect("refresher");
        let steps = (REFRESH_PERIOD.as_secs() / STEP_EVERY.as_secs()) as usize;
        let pass = |r: &mut Refresher| {
            let mut evs = Vec::new();
            for _ in 0..steps {
                r.step(&mut evs).expect("step");
            }
            let mut named: Vec<(u16, IpAddr)> = evs
                .iter()
                .map(|e| d.index.outgoing(e, Timeouts::default()).map(|(c, _)| (c.cport, c.daddr)).expect("a known backend"))
                .collect();
            named.sort();
            named
        };
        let all = vec![(40000, ip("10.1.0.11")), (40001, ip("10.1.0.10")), (40002, ip("fd00:1::11"))];
        assert_eq!(pass(&mut r), all, "first pass: every live connection");
        assert_eq!(pass(&mut r), vec![], "no traffic since: nothing");
        // A packet refreshes its way's stamp once the connection-table clock (jiffies) moved.
        let moved = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(5));
            d.run(Frame::tcp4(CLIENT, DR, 40000, 80, ACK));
            let got = pass(&mut r);
            if !got.is_empty() {
                assert_eq!(got, vec![(40000, ip("10.1.0.11"))], "only the connection that carried the packet");
            }
            !got.is_empty()
        });
        assert!(moved, "the established flow's packets never moved its stamp");
        r.reset();
        assert_eq!(pass(&mut r), all, "after a reset (new MASTER): everything again");
    });
}
