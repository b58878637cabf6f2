//! Packet-fixture tests of `ka_xdp`'s load balancer through BPF_PROG_TEST_RUN: DR, TUN and NAT
//! (both directions), IPv4 and IPv6, TCP and UDP, mastership off, non-VIP traffic, next hops
//! from `bpf_fib_lookup` and from the neighbour map, and with forwarding disabled (the FIB
//! refuses; the neighbour map the daemon fills answers). Each case runs on freshly loaded maps,
//! seeded through the userspace map writer, inside a namespace whose veth interfaces, routes
//! and permanent neighbours give `bpf_fib_lookup` real answers; it checks the verdict, the
//! output bytes (hex diff) and every counter.

mod common;

use std::net::IpAddr;

use ka::lb::{
    writer::MapWriter,
    BackendSpec, DesiredState, L4Proto, Method, Neighbour, Scheduler, ServiceSpec, TunnelSource,
};
use ka_common::stats::Counter;
use ka_tests::{
    netns::Netns,
    packet::{flow_label, hex_diff, set_flow_label, tunnel, Frame, MAC_A},
};

use common::{
    fixture::{check_counters, check_step, run_cases, PacketCase, Step},
    XDP_PASS, XDP_REDIRECT, XDP_TX,
};

const LB0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const LB1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];
const RS1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x10, 0x10];
const RS2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x20, 0x20];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xfe, 0xfe];
const NEIGH_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x99, 0x99];

const CLIENT4: &str = "198.18.0.1";
const CLIENT6: &str = "2001:db8:c::1";
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// The lab: lb0 (10.1.0.1/24, fd00:1::1/64) with RS1 10.1.0.10 / fd00:1::10 and the default
/// gateway .254 / ::fe; lb1 (10.2.0.1/24, fd00:2::1/64) with RS2 10.2.0.20 / fd00:2::20.
fn lab() -> Netns {
    let ns = Netns::new("lb").expect("netns");
    let cmds: &[&[&str]] = &[
        &[
            "ip",
            "link",
            "add",
            "lb0",
            "address",
            "02:00:00:00:01:01",
            "type",
            "veth",
            "peer",
            "name",
            "lb0p",
        ],
        &[
            "ip",
            "link",
            "add",
            "lb1",
            "address",
            "02:00:00:00:02:01",
            "type",
            "veth",
            "peer",
            "name",
            "lb1p",
        ],
        &["ip", "link", "set", "lb0", "up"],
        &["ip", "link", "set", "lb0p", "up"],
        &["ip", "link", "set", "lb1", "up"],
        &["ip", "link", "set", "lb1p", "up"],
        &["ip", "addr", "add", "10.1.0.1/24", "dev", "lb0"],
        &["ip", "addr", "add", "10.2.0.1/24", "dev", "lb1"],
        &["ip", "addr", "add", "fd00:1::1/64", "dev", "lb0", "nodad"],
        &["ip", "addr", "add", "fd00:2::1/64", "dev", "lb1", "nodad"],
        &[
            "sysctl",
            "-qw",
            "net.ipv4.conf.all.forwarding=1",
            "net.ipv6.conf.all.forwarding=1",
        ],
        &[
            "ip",
            "neigh",
            "replace",
            "10.1.0.10",
            "lladdr",
            "02:00:00:00:10:10",
            "dev",
            "lb0",
            "nud",
            "permanent",
        ],
        &[
            "ip",
            "neigh",
            "replace",
            "10.1.0.254",
            "lladdr",
            "02:00:00:00:fe:fe",
            "dev",
            "lb0",
            "nud",
            "permanent",
        ],
        &[
            "ip",
            "neigh",
            "replace",
            "10.2.0.20",
            "lladdr",
            "02:00:00:00:20:20",
            "dev",
            "lb1",
            "nud",
            "permanent",
        ],
        &[
            "ip",
            "neigh",
            "replace",
            "fd00:1::10",
            "lladdr",
            "02:00:00:00:10:10",
            "dev",
            "lb0",
            "nud",
            "permanent",
        ],
        &[
            "ip",
            "neigh",
            "replace",
            "fd00:1::fe",
            "lladdr",
            "02:00:00:00:fe:fe",
            "dev",
            "lb0",
            "nud",
            "permanent",
        ],
        &[
            "ip",
            "neigh",
            "replace",
            "fd00:2::20",
            "lladdr",
            "02:00:00:00:20:20",
            "dev",
            "lb1",
            "nud",
            "permanent",
        ],
        &[
            "ip",
            "route",
            "add",
            "default",
            "via",
            "10.1.0.254",
            "dev",
            "lb0",
        ],
        &[
            "ip",
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:1::fe",
            "dev",
            "lb0",
        ],
        // No route to 10.9.0.0/24: its next hop comes from the neighbour map.
        &["ip", "route", "add", "unreachable", "10.9.0.0/24"],
    ];
    for c in cmds {
        ns.run(c).unwrap_or_else(|e| panic!("{c:?}: {e:#}"));
    }
    ns
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn svc(
    vip: &str,
    port: u16,
    proto: L4Proto,
    sched: Scheduler,
    rs: &str,
    rs_port: u16,
    method: Method,
) -> ServiceSpec {
    ServiceSpec {
        vip: ip(vip),
        port,
        proto,
        scheduler: sched,
        persistence: None,
        master_slot: None,
        backends: vec![BackendSpec {
            addr: ip(rs),
            port: rs_port,
            weight: 1,
            method,
            healthy: true,
            uthreshold: 0,
            lthreshold: 0,
        }],
        options: Default::default(),
    }
}

/// The services of every case.
fn desired() -> DesiredState {
    use L4Proto::{Tcp, Udp};
    use Method::{Dr, Nat, Tun};
    let mut gated = svc(
        "198.51.100.9",
        80,
        Tcp,
        Scheduler::Maglev,
        "10.1.0.10",
        80,
        Dr,
    );
    gated.master_slot = Some(5);
    DesiredState {
        services: vec![
            svc(
                "198.51.100.1",
                80,
                Tcp,
                Scheduler::Maglev,
                "10.1.0.10",
                80,
                Dr,
            ),
            svc(
                "198.51.100.2",
                80,
                Tcp,
                Scheduler::RoundRobin,
                "10.2.0.20",
                80,
                Tun,
            ),
            svc(
                "198.51.100.3",
                53,
                Udp,
                Scheduler::SourceHash,
                "10.2.0.20",
                5353,
                Nat,
            ),
            svc(
                "198.51.100.4",
                80,
                Tcp,
                Scheduler::Maglev,
                "10.2.0.20",
                8080,
                Nat,
            ),
            svc(
                "2001:db8::1",
                80,
                Tcp,
                Scheduler::Maglev,
                "fd00:1::10",
                80,
                Dr,
            ),
            svc(
                "2001:db8::2",
                53,
                Udp,
                Scheduler::Maglev,
                "fd00:2::20",
                53,
                Tun,
            ),
            svc(
                "2001:db8::3",
                443,
                Tcp,
                Scheduler::Maglev,
                "fd00:2::20",
                8443,
                Nat,
            ),
            gated,
            svc(
                "198.51.100.10",
                80,
                Tcp,
                Scheduler::Maglev,
                "10.9.0.10",
                80,
                Dr,
            ),
        ],
        tunnel_src_v4: Some(TunnelSource {
            addr: ip("10.1.0.1"),
            host_bits: 0,
        }),
        tunnel_src_v6: Some(TunnelSource {
            addr: ip("fd00:1::1"),
            host_bits: 0,
        }),
        neighbours: vec![Neighbour {
            addr: ip("10.9.0.10"),
            ifindex: 0,
            smac: LB0_MAC,
            dmac: NEIGH_MAC,
        }],
    }
}

fn with_macs(mut f: Frame, dst: [u8; 6], src: [u8; 6]) -> Frame {
    f.eth_dst = dst;
    f.eth_src = src;
    f
}


fn cases() -> Vec<PacketCase> {
    use Counter::*;
    let lb4 = |c: Counter| vec![(Ipv4, 1), (Tcp, 1), (c, 1), (LbNewFlow, 1), (LbFibHit, 1)];
    let syn4 = |vip: &str, port: u16| Frame::tcp4(CLIENT4, vip, 40000, port, SYN);
    let syn6 = |vip: &str, port: u16| Frame::tcp6(CLIENT6, vip, 40000, port, SYN);
    let tun4_in = syn4("198.51.100.2", 80).build();
    let tun6_in = Frame::udp6(CLIENT6, "2001:db8::2", 40000, 53)
        .payload(b"query")
        .build();
    vec![
        PacketCase {
            name: "dr4 tcp syn: MACs rewritten, XDP_TX on lb0",
            steps: vec![Step {
                input: syn4("198.51.100.1", 80).build(),
                iface: 0,
                expected_action: XDP_TX,
                expected_output: with_macs(syn4("198.51.100.1", 80), RS1_MAC, LB0_MAC).build(),
            }],
            counters: [lb4(LbDr), vec![(VerdictTx, 1)]].concat(),
            service_packets: vec![(0, 1, 1)],
        },
        PacketCase {
            name: "dr4 established: second packet hits the connection table",
            steps: vec![
                Step {
                    input: syn4("198.51.100.1", 80).build(),
                    iface: 0,
                    expected_action: XDP_TX,
                    expected_output: with_macs(syn4("198.51.100.1", 80), RS1_MAC, LB0_MAC).build(),
                },
                Step {
                    input: Frame::tcp4(CLIENT4, "198.51.100.1", 40000, 80, ACK).build(),
                    iface: 0,
                    expected_action: XDP_TX,
                    expected_output: with_macs(
                        Frame::tcp4(CLIENT4, "198.51.100.1", 40000, 80, ACK),
                        RS1_MAC,
                        LB0_MAC,
                    )
                    .build(),
                },
            ],
            counters: vec![
                (Ipv4, 2),
                (Tcp, 2),
                (LbNewFlow, 1),
                (LbConnHit, 1),
                // The second packet's next hop comes from the cache.
                (LbFibHit, 1),
                (LbDr, 2),
                (VerdictTx, 2),
            ],
            service_packets: vec![(0, 2, 2)],
        },
        PacketCase {
            name: "tun4 (IPIP) to a real server behind lb1: XDP_REDIRECT",
            steps: vec![Step {
                input: tun4_in.clone(),
                iface: 0,
                expected_action: XDP_REDIRECT,
                expected_output: tunnel(&tun4_in, RS2_MAC, LB1_MAC, "10.1.0.1", "10.2.0.20"),
            }],
            counters: [lb4(LbTun), vec![(VerdictRedirect, 1)]].concat(),
            service_packets: vec![(1, 1, 1)],
        },
        PacketCase {
            name: "nat4 udp: DNAT with port change, then the reply is translated back",
            steps: vec![
                Step {
                    input: Frame::udp4(CLIENT4, "198.51.100.3", 40000, 53)
                        .payload(b"query")
                        .build(),
                    iface: 0,
                    expected_action: XDP_REDIRECT,
                    expected_output: with_macs(
                        Frame::udp4(CLIENT4, "10.2.0.20", 40000, 5353).payload(b"query"),
                        RS2_MAC,
                        LB1_MAC,
                    )
                    .build(),
                },
                Step {
                    input: with_macs(
                        Frame::udp4("10.2.0.20", CLIENT4, 5353, 40000).payload(b"answer"),
                        LB1_MAC,
                        RS2_MAC,
                    )
                    .build(),
                    iface: 1,
                    expected_action: XDP_REDIRECT,
                    expected_output: with_macs(
                        Frame::udp4("198.51.100.3", CLIENT4, 53, 40000).payload(b"answer"),
                        GW_MAC,
                        LB0_MAC,
                    )
                    .build(),
                },
            ],
            counters: vec![
                (Ipv4, 2),
                (Udp, 2),
                (LbNewFlow, 1),
                (LbFibHit, 2),
                (LbNat, 1),
                (LbNatReply, 1),
                (PassNotVip, 0),
                (VerdictRedirect, 2),
            ],
            service_packets: vec![(2, 2, 1)],
        },
        PacketCase {
            name: "nat4 tcp: DNAT 80 -> 8080",
            steps: vec![Step {
                input: syn4("198.51.100.4", 80).build(),
                iface: 0,
                expected_action: XDP_REDIRECT,
                expected_output: with_macs(
                    Frame::tcp4(CLIENT4, "10.2.0.20", 40000, 8080, SYN),
                    RS2_MAC,
                    LB1_MAC,
                )
                .build(),
            }],
            counters: [lb4(LbNat), vec![(VerdictRedirect, 1)]].concat(),
            service_packets: vec![(3, 1, 1)],
        },
        PacketCase {
            name: "dr6 tcp syn",
            steps: vec![Step {
                input: syn6("2001:db8::1", 80).build(),
                iface: 0,
                expected_action: XDP_TX,
                expected_output: with_macs(syn6("2001:db8::1", 80), RS1_MAC, LB0_MAC).build(),
            }],
            counters: vec![
                (Ipv6, 1),
                (Tcp, 1),
                (LbNewFlow, 1),
                (LbFibHit, 1),
                (LbDr, 1),
                (VerdictTx, 1),
            ],
            service_packets: vec![(4, 1, 1)],
        },
        PacketCase {
            name: "tun6 udp (IP6IP6)",
            steps: vec![Step {
                input: tun6_in.clone(),
                iface: 0,
                expected_action: XDP_REDIRECT,
                // The flow label is the flow hash of the (inner) flow, computed here from
                // ka-common's hash, not copied from the program's output.
                expected_output: set_flow_label(
                    tunnel(&tun6_in, RS2_MAC, LB1_MAC, "fd00:1::1", "fd00:2::20"),
                    flow_label(CLIENT6, "2001:db8::2", 40000, 53, 17),
                ),
            }],
            counters: vec![
                (Ipv6, 1),
                (Udp, 1),
                (LbNewFlow, 1),
                (LbFibHit, 1),
                (LbTun, 1),
                (VerdictRedirect, 1),
            ],
            service_packets: vec![(5, 1, 1)],
        },
        PacketCase {
            name: "nat6 tcp both directions",
            steps: vec![
                Step {
                    input: syn6("2001:db8::3", 443).build(),
                    iface: 0,
                    expected_action: XDP_REDIRECT,
                    expected_output: with_macs(
                        Frame::tcp6(CLIENT6, "fd00:2::20", 40000, 8443, SYN),
                        RS2_MAC,
                        LB1_MAC,
                    )
                    .build(),
                },
                Step {
                    input: with_macs(
                        Frame::tcp6("fd00:2::20", CLIENT6, 8443, 40000, SYN | ACK),
                        LB1_MAC,
                        RS2_MAC,
                    )
                    .build(),
                    iface: 1,
                    expected_action: XDP_REDIRECT,
                    expected_output: with_macs(
                        Frame::tcp6("2001:db8::3", CLIENT6, 443, 40000, SYN | ACK),
                        GW_MAC,
                        LB0_MAC,
                    )
                    .build(),
                },
            ],
            counters: vec![
                (Ipv6, 2),
                (Tcp, 2),
                (LbNewFlow, 1),
                (LbFibHit, 2),
                (LbNat, 1),
                (LbNatReply, 1),
                (VerdictRedirect, 2),
            ],
            service_packets: vec![(6, 2, 1)],
        },
        PacketCase {
            name: "mastership off: passes to the kernel untouched",
            steps: vec![Step {
                input: syn4("198.51.100.9", 80).build(),
                iface: 0,
                expected_action: XDP_PASS,
                expected_output: syn4("198.51.100.9", 80).build(),
            }],
            counters: vec![(Ipv4, 1), (Tcp, 1), (PassNotMaster, 1), (VerdictPass, 1)],
            service_packets: vec![(7, 0, 0)],
        },
        PacketCase {
            name: "next hop from the neighbour map when the FIB has no route",
            steps: vec![Step {
                input: syn4("198.51.100.10", 80).build(),
                iface: 0,
                expected_action: XDP_REDIRECT,
                expected_output: with_macs(syn4("198.51.100.10", 80), NEIGH_MAC, LB0_MAC).build(),
            }],
            counters: vec![
                (Ipv4, 1),
                (Tcp, 1),
                (LbNewFlow, 1),
                (LbNeighHit, 1),
                (LbDr, 1),
                (VerdictRedirect, 1),
            ],
            service_packets: vec![(8, 1, 1)],
        },
        PacketCase {
            name: "non-VIP tcp passes",
            steps: vec![Step {
                input: syn4("198.51.100.200", 80).build(),
                iface: 0,
                expected_action: XDP_PASS,
                expected_output: syn4("198.51.100.200", 80).build(),
            }],
            counters: vec![(Ipv4, 1), (Tcp, 1), (PassNotVip, 1), (VerdictPass, 1)],
            service_packets: vec![],
        },
        PacketCase {
            name: "VIP on a port with no service passes",
            steps: vec![Step {
                input: syn4("198.51.100.1", 81).build(),
                iface: 0,
                expected_action: XDP_PASS,
                expected_output: syn4("198.51.100.1", 81).build(),
            }],
            counters: vec![(Ipv4, 1), (Tcp, 1), (PassNotVip, 1), (VerdictPass, 1)],
            service_packets: vec![(0, 0, 0)],
        },
        PacketCase {
            name: "vlan-tagged VIP traffic is left to the kernel",
            steps: vec![Step {
                input: syn4("198.51.100.1", 80).vlan(7).build(),
                iface: 0,
                expected_action: XDP_PASS,
                expected_output: syn4("198.51.100.1", 80).vlan(7).build(),
            }],
            counters: vec![
                (Vlan, 1),
                (Ipv4, 1),
                (Tcp, 1),
                (PassLbUnsupported, 1),
                (VerdictPass, 1),
            ],
            service_packets: vec![(0, 0, 0)],
        },
        PacketCase {
            name: "malformed frame to a VIP: parse error, passed",
            steps: vec![Step {
                input: {
                    let mut f = syn4("198.51.100.1", 80).build();
                    f[14] = 0x44;
                    f
                },
                iface: 0,
                expected_action: XDP_PASS,
                expected_output: {
                    let mut f = syn4("198.51.100.1", 80).build();
                    f[14] = 0x44;
                    f
                },
            }],
            counters: vec![(ErrBadIpv4, 1), (VerdictPass, 1)],
            service_packets: vec![(0, 0, 0)],
        },
    ]
}

/// Every case of [`cases`] through the one fixture runner (`common::fixture`), in the lab.
#[test]
fn lb_fixtures() {
    ka_tests::require_root();
    let ns = lab();
    let handle = ns
        .enter(|| {
            let idx = |n: &str| nix::net::if_::if_nametoindex(n).expect("ifindex");
            let ifs = [idx("lb0"), idx("lb1")];
            let mut d = desired();
            d.neighbours[0].ifindex = ifs[1];
            run_cases(&cases(), &d, &ifs)
        })
        .expect("enter netns");
    let failures = handle.join().expect("fixture thread");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// Runs `f` on a thread pinned to `cpu` (inside the calling thread's namespace: a spawned
/// thread inherits it).
fn on_cpu<T: Send + 'static>(cpu: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity on this thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            assert_eq!(rc, 0, "sched_setaffinity(CPU {cpu}): {}", std::io::Error::last_os_error());
        }
        f()
    })
    .join()
    .expect("pinned thread")
}

/// The connection table is one table for every CPU: a flow scheduled on CPU 0 keeps its real
/// server when its next packet is handled by CPU 1, even after the scheduler would now pick
/// another server (the first one drained to weight 0). A per-CPU-value table would hand CPU 1
/// a zeroed entry (backend id 0) instead.
#[test]
fn conn_entry_is_shared_across_cpus() {
    ka_tests::require_root();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(cpus >= 2, "this test needs two CPUs, the machine has {cpus}");
    let ns = lab();
    let handle = ns
        .enter(|| {
            let idx = |n: &str| nix::net::if_::if_nametoindex(n).expect("ifindex");
            let (lb0, lb1) = (idx("lb0"), idx("lb1"));
            let mut spec = svc("198.51.100.1", 80, L4Proto::Tcp, Scheduler::Maglev, "10.1.0.10", 80, Method::Dr);
            spec.backends.push(BackendSpec { addr: ip("10.2.0.20"), port: 80, weight: 1, method: Method::Dr, healthy: true, uthreshold: 0, lthreshold: 0 });
            let mut d = DesiredState { services: vec![spec], ..Default::default() };
            let loaded = std::sync::Arc::new(std::sync::Mutex::new(common::Loaded::new()));
            let mut writer = MapWriter::new();
            writer.apply(&mut loaded.lock().expect("lock").ebpf, &d).expect("apply");
            // The id-1 backend (not the zero id a per-CPU table would invent) is RS2 on lb1.
            let rs2 = d.services[0].backends[1].clone();
            assert_eq!(writer.backend_id(&d.services[0], rs2.addr, rs2.port, rs2.method), Some(1), "RS2's backend id");
            // A flow that Maglev sends to RS2 (redirected to lb1), scheduled on CPU 0.
            let l = loaded.clone();
            let sport = on_cpu(0, move || {
                (40000..40256u16).find(|&p| {
                    let f = with_macs(Frame::tcp4(CLIENT4, "198.51.100.1", p, 80, SYN), LB0_MAC, MAC_A).build();
                    l.lock().expect("lock").run_on(&f, lb0).action == XDP_REDIRECT
                })
            })
            .expect("some flow of 256 goes to RS2");
            // RS2 drained: new flows now go to RS1 only.
            d.services[0].backends[1].weight = 0;
            writer.apply(&mut loaded.lock().expect("lock").ebpf, &d).expect("apply");
            let l = loaded.clone();
            let (new_flow, same_flow, reopened) = on_cpu(1, move || {
                let l = l.lock().expect("lock");
                let new = with_macs(Frame::tcp4(CLIENT4, "198.51.100.1", sport.wrapping_add(1000), 80, SYN), LB0_MAC, MAC_A).build();
                let est = with_macs(Frame::tcp4(CLIENT4, "198.51.100.1", sport, 80, ACK), LB0_MAC, MAC_A).build();
                let syn_again = with_macs(Frame::tcp4(CLIENT4, "198.51.100.1", sport, 80, SYN), LB0_MAC, MAC_A).build();
                (l.run_on(&new, lb0), l.run_on(&est, lb0), l.run_on(&syn_again, lb0))
            });
            assert_eq!(new_flow.action, XDP_TX, "a new flow goes to RS1 (same interface) once RS2 is drained");
            assert_eq!(same_flow.action, XDP_REDIRECT, "the established flow stays on RS2, from CPU 1");
            assert_eq!(&same_flow.data[0..6], &RS2_MAC, "to RS2's MAC");
            // A SYN on the same 5-tuple opens a new connection: scheduled afresh (to RS1), as
            // IPVS and Katran do, not pinned by the old entry.
            assert_eq!(reopened.action, XDP_TX, "a new SYN on the old 5-tuple is scheduled again");
            let _ = lb1;
            let c = loaded.lock().expect("lock").counters();
            assert!(c[Counter::LbConnHit.name()] >= 1, "the CPU 1 packet was a connection-table hit: {c:?}");
        })
        .expect("enter netns");
    handle.join().expect("test thread");
}

/// The connection table is set-associative: a set holds `CONN_WAYS` flows. Five new flows of
/// one set: the set then holds four of them, each with the backend it was scheduled to, and
/// those four are hits on their next packet.
#[test]
fn conn_table_set_holds_its_ways() {
    use ka_common::lb::{conn_set, conn_hash4, ConnSet4, FlowKey4, CONN4_MAP, CONN_WAYS};
    ka_tests::require_root();
    let ns = lab();
    let handle = ns
        .enter(|| {
            let lb0 = nix::net::if_::if_nametoindex("lb0").expect("ifindex");
            let spec = svc("198.51.100.1", 80, L4Proto::Tcp, Scheduler::Maglev, "10.1.0.10", 80, Method::Dr);
            let d = DesiredState { services: vec![spec], ..Default::default() };
            let mut loaded = common::Loaded::new();
            let mut writer = MapWriter::new();
            writer.apply(&mut loaded.ebpf, &d).expect("apply");
            let b = &d.services[0].backends[0];
            let backend = writer.backend_id(&d.services[0], b.addr, b.port, b.method).expect("backend id");
            let key = |(a, p): ([u8; 4], u16)| FlowKey4 {
                src: a,
                dst: [198, 51, 100, 1],
                sport: p.to_be_bytes(),
                dport: 80u16.to_be_bytes(),
                proto: 6,
                _pad: [0; 3],
            };
            // Clients from 198.18.0.0/16, ports 1024..1088: 4M flows, ~64 per set.
            let want = conn_set(conn_hash4(&key(([198, 18, 0, 1], 1024))));
            let flows: Vec<([u8; 4], u16)> = (0..=255u8)
                .flat_map(|x| (0..=255u8).map(move |y| [198, 18, x, y]))
                .flat_map(|a| (1024..1088u16).map(move |p| (a, p)))
                .filter(|&f| conn_set(conn_hash4(&key(f))) == want)
                .take(CONN_WAYS + 1)
                .collect();
            assert_eq!(flows.len(), CONN_WAYS + 1, "found {} flows of one set", flows.len());
            let pkt = |(a, p): ([u8; 4], u16), flags: u8| {
                let src = std::net::Ipv4Addr::from(a).to_string();
                with_macs(Frame::tcp4(&src, "198.51.100.1", p, 80, flags), LB0_MAC, MAC_A).build()
            };
            for &f in &flows {
                assert_eq!(loaded.run_on(&pkt(f, SYN), lb0).action, XDP_TX);
            }
            let table: aya::maps::Array<_, ConnSet4> =
                aya::maps::Array::try_from(loaded.ebpf.map(CONN4_MAP).expect("conn map")).expect("array");
            let set = table.get(&want, 0).expect("set");
            let held: Vec<([u8; 4], u16)> = flows
                .iter()
                .copied()
                .filter(|&f| set.ways.iter().any(|w| w.stamp != 0 && w.key == key(f) && w.backend == backend))
                .collect();
            assert_eq!(held.len(), CONN_WAYS, "the set holds {CONN_WAYS} of the {} flows: {set:?}", flows.len());
            for &f in &held {
                assert_eq!(loaded.run_on(&pkt(f, ACK), lb0).action, XDP_TX);
            }
            let c = loaded.counters();
            assert_eq!(c[Counter::LbConnHit.name()], CONN_WAYS as u64, "each held flow's next packet is a hit: {c:?}");
        })
        .expect("enter netns");
    handle.join().expect("test thread");
}

/// `persistence_granularity`: with a /24 mask, every client of one /24 follows the first one's
/// persistence template to the same real server (new connections, other ports); clients of
/// other /24s are scheduled on their own.
#[test]
fn persistence_granularity_groups_clients_by_prefix() {
    ka_tests::require_root();
    let ns = lab();
    let handle = ns
        .enter(|| {
            let lb0 = nix::net::if_::if_nametoindex("lb0").expect("ifindex");
            let mut spec = svc("198.51.100.1", 80, L4Proto::Tcp, Scheduler::Maglev, "10.1.0.10", 80, Method::Dr);
            spec.backends.push(BackendSpec { addr: ip("10.2.0.20"), port: 80, weight: 1, method: Method::Dr, healthy: true, uthreshold: 0, lthreshold: 0 });
            spec.persistence = Some(ka::lb::Persistence { timeout: std::time::Duration::from_secs(300), prefix_len: 24 });
            let d = DesiredState { services: vec![spec], ..Default::default() };
            let mut loaded = common::Loaded::new();
            MapWriter::new().apply(&mut loaded.ebpf, &d).expect("apply");
            let syn = |src: &str, port: u16| with_macs(Frame::tcp4(src, "198.51.100.1", port, 80, SYN), LB0_MAC, MAC_A).build();
            let first = loaded.run_on(&syn("198.18.0.1", 40000), lb0).action;
            for host in 2..=20u16 {
                let got = loaded.run_on(&syn(&format!("198.18.0.{host}"), 41000 + host), lb0).action;
                assert_eq!(got, first, "198.18.0.{host} follows its /24's template");
            }
            let c = loaded.counters();
            assert_eq!(c[Counter::LbPersistHit.name()], 19, "{c:?}");
            let others: Vec<u32> = (1..=20u16)
                .map(|net| loaded.run_on(&syn(&format!("198.18.{net}.1"), 42000), lb0).action)
                .collect();
            assert!(others.iter().any(|&a| a != first), "other /24s are scheduled on their own: {others:?}");
            assert_eq!(loaded.counters()[Counter::LbPersistHit.name()], 19, "no template hit for other /24s");
        })
        .expect("enter netns");
    handle.join().expect("test thread");
}

/// One case of [`lb_forwards_with_forwarding_disabled`]: a service, the neighbour-map entry the
/// daemon's resolver would have written for its real server (if any), and the packets.
struct FwdOffCase {
    name: &'static str,
    service: ServiceSpec,
    /// (real server, egress interface: 0 lb0 / 1 lb1, next-hop MAC), as the resolver writes it.
    resolved: Option<(&'static str, usize, [u8; 6])>,
    /// Host bits of the IPv4 tunnel source (10.1.0.1) taken from the flow's scheduling hash.
    tun4_host_bits: u8,
    steps: Vec<Step>,
    counters: Vec<(Counter, u64)>,
}

/// A host with default sysctls (forwarding off on every interface, for IPv4 and IPv6):
/// `bpf_fib_lookup` refuses every packet (counted `lb_fib_fwd_disabled`, apart from
/// `pass_no_nexthop`), yet DR and TUN forward with the next hop the resolver wrote to the
/// neighbour map (through the same map writer as the daemon), as IPVS needs no forwarding.
/// Without an entry the packet passes to the kernel. An established flow's next packet takes
/// the per-CPU cached next hop: no second lookup. On the old datapath every case passed to the
/// kernel (nothing wrote resolved next hops) and nothing counted the refusal.
#[test]
fn lb_forwards_with_forwarding_disabled() {
    ka_tests::require_root();
    let ns = lab();
    ns.run(&[
        "sysctl",
        "-qw",
        "net.ipv4.conf.all.forwarding=0",
        "net.ipv6.conf.all.forwarding=0",
    ])
    .expect("forwarding off");
    for (fam, iface) in [("ipv4", "lb0"), ("ipv4", "lb1"), ("ipv6", "lb0"), ("ipv6", "lb1")] {
        let v = ns
            .run(&["cat", &format!("/proc/sys/net/{fam}/conf/{iface}/forwarding")])
            .expect("read sysctl");
        assert_eq!(v.trim(), "0", "{fam} forwarding on {iface} must be off, as on a default host");
    }
    use Counter::*;
    let syn4 = |vip: &str| Frame::tcp4(CLIENT4, vip, 40000, 80, SYN);
    let ack4 = |vip: &str| Frame::tcp4(CLIENT4, vip, 40000, 80, ACK);
    let syn6 = |vip: &str| Frame::tcp6(CLIENT6, vip, 40000, 80, SYN);
    let tun_in = syn4("198.51.100.2").build();
    // 10.1.0.0/24 with its host byte from `ka_common::lb::flow_hash4` of the flow, computed here.
    let tun4_src = {
        let key = ka_common::lb::FlowKey4 {
            src: CLIENT4.parse::<std::net::Ipv4Addr>().expect("v4").octets(),
            dst: [198, 51, 100, 2],
            sport: 40000u16.to_be_bytes(),
            dport: 80u16.to_be_bytes(),
            proto: 6,
            _pad: [0; 3],
        };
        format!("10.1.0.{}", ka_common::lb::flow_hash4(&key) & 0xff)
    };
    let dr4 = || svc("198.51.100.1", 80, L4Proto::Tcp, Scheduler::Maglev, "10.1.0.10", 80, Method::Dr);
    let cases = vec![
        FwdOffCase {
            name: "dr4: next hop from the neighbour map, XDP_TX; the established packet uses the cache",
            service: dr4(),
            tun4_host_bits: 0,
            resolved: Some(("10.1.0.10", 0, RS1_MAC)),
            steps: vec![
                Step {
                    input: syn4("198.51.100.1").build(),
                    iface: 0,
                    expected_action: XDP_TX,
                    expected_output: with_macs(syn4("198.51.100.1"), RS1_MAC, LB0_MAC).build(),
                },
                Step {
                    input: ack4("198.51.100.1").build(),
                    iface: 0,
                    expected_action: XDP_TX,
                    expected_output: with_macs(ack4("198.51.100.1"), RS1_MAC, LB0_MAC).build(),
                },
            ],
            counters: vec![
                (Ipv4, 2),
                (Tcp, 2),
                (LbNewFlow, 1),
                (LbConnHit, 1),
                (LbFibFwdDisabled, 1),
                (LbNeighHit, 1),
                (LbDr, 2),
                (VerdictTx, 2),
            ],
        },
        FwdOffCase {
            name: "dr4 without a neighbour-map entry: passes, the refusal counted apart",
            service: dr4(),
            tun4_host_bits: 0,
            resolved: None,
            steps: vec![Step {
                input: syn4("198.51.100.1").build(),
                iface: 0,
                expected_action: XDP_PASS,
                expected_output: syn4("198.51.100.1").build(),
            }],
            counters: vec![
                (Ipv4, 1),
                (Tcp, 1),
                (LbNewFlow, 1),
                (LbFibFwdDisabled, 1),
                (PassNoNexthop, 1),
                (VerdictPass, 1),
            ],
        },
        FwdOffCase {
            name: "tun4 to a real server behind lb1: IPIP, XDP_REDIRECT from the neighbour map",
            service: svc("198.51.100.2", 80, L4Proto::Tcp, Scheduler::Maglev, "10.2.0.20", 80, Method::Tun),
            tun4_host_bits: 0,
            resolved: Some(("10.2.0.20", 1, RS2_MAC)),
            steps: vec![Step {
                input: tun_in.clone(),
                iface: 0,
                expected_action: XDP_REDIRECT,
                expected_output: tunnel(&tun_in, RS2_MAC, LB1_MAC, "10.1.0.1", "10.2.0.20"),
            }],
            counters: vec![
                (Ipv4, 1),
                (Tcp, 1),
                (LbNewFlow, 1),
                (LbFibFwdDisabled, 1),
                (LbNeighHit, 1),
                (LbTun, 1),
                (VerdictRedirect, 1),
            ],
        },
        FwdOffCase {
            name: "tun4 with 8 host bits: the outer source's low byte is the flow's scheduling hash's",
            service: svc("198.51.100.2", 80, L4Proto::Tcp, Scheduler::Maglev, "10.2.0.20", 80, Method::Tun),
            tun4_host_bits: 8,
            resolved: Some(("10.2.0.20", 1, RS2_MAC)),
            steps: vec![Step {
                input: tun_in.clone(),
                iface: 0,
                expected_action: XDP_REDIRECT,
                expected_output: tunnel(&tun_in, RS2_MAC, LB1_MAC, &tun4_src, "10.2.0.20"),
            }],
            counters: vec![
                (Ipv4, 1),
                (Tcp, 1),
                (LbNewFlow, 1),
                (LbFibFwdDisabled, 1),
                (LbNeighHit, 1),
                (LbTun, 1),
                (VerdictRedirect, 1),
            ],
        },
        FwdOffCase {
            name: "dr6: IPv6 forwarding off, next hop from the neighbour map",
            service: svc("2001:db8::1", 80, L4Proto::Tcp, Scheduler::Maglev, "fd00:1::10", 80, Method::Dr),
            tun4_host_bits: 0,
            resolved: Some(("fd00:1::10", 0, RS1_MAC)),
            steps: vec![Step {
                input: syn6("2001:db8::1").build(),
                iface: 0,
                expected_action: XDP_TX,
                expected_output: with_macs(syn6("2001:db8::1"), RS1_MAC, LB0_MAC).build(),
            }],
            counters: vec![
                (Ipv6, 1),
                (Tcp, 1),
                (LbNewFlow, 1),
                (LbFibFwdDisabled, 1),
                (LbNeighHit, 1),
                (LbDr, 1),
                (VerdictTx, 1),
            ],
        },
        FwdOffCase {
            name: "tun6 without a neighbour-map entry: passes",
            service: svc("2001:db8::2", 80, L4Proto::Tcp, Scheduler::Maglev, "fd00:2::20", 80, Method::Tun),
            tun4_host_bits: 0,
            resolved: None,
            steps: vec![Step {
                input: syn6("2001:db8::2").build(),
                iface: 0,
                expected_action: XDP_PASS,
                expected_output: syn6("2001:db8::2").build(),
            }],
            counters: vec![
                (Ipv6, 1),
                (Tcp, 1),
                (LbNewFlow, 1),
                (LbFibFwdDisabled, 1),
                (PassNoNexthop, 1),
                (VerdictPass, 1),
            ],
        },
    ];
    let handle = ns
        .enter(move || {
            let idx = |n: &str| nix::net::if_::if_nametoindex(n).expect("ifindex");
            let ifs = [idx("lb0"), idx("lb1")];
            let macs = [LB0_MAC, LB1_MAC];
            let mut failures = Vec::new();
            for c in cases {
                let mut loaded = common::Loaded::new();
                let d = DesiredState {
                    services: vec![c.service.clone()],
                    tunnel_src_v4: Some(TunnelSource { addr: ip("10.1.0.1"), host_bits: c.tun4_host_bits }),
                    tunnel_src_v6: Some(TunnelSource { addr: ip("fd00:1::1"), host_bits: 0 }),
                    neighbours: Vec::new(),
                };
                let mut writer = MapWriter::new();
                writer.apply(&mut loaded.ebpf, &d).expect("apply");
                let entries: std::collections::BTreeMap<IpAddr, ka_common::lb::NeighValue> = c
                    .resolved
                    .iter()
                    .map(|&(rs, i, dmac)| (ip(rs), ka_common::lb::NeighValue { ifindex: ifs[i], smac: macs[i], dmac }))
                    .collect();
                let written = writer.set_resolved(&mut loaded.ebpf, &entries).expect("set resolved");
                assert_eq!(written, entries.len(), "{}: one write per new entry", c.name);
                assert_eq!(writer.set_resolved(&mut loaded.ebpf, &entries).expect("again"), 0, "{}: nothing changed", c.name);
                for (i, s) in c.steps.iter().enumerate() {
                    check_step(&loaded, c.name, i, s, &ifs, &mut failures);
                }
                check_counters(&loaded, c.name, &c.counters, &mut failures);
            }
            failures
        })
        .expect("enter netns");
    let failures = handle.join().expect("fixture thread");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// A real server that leaves (or whose next hop becomes unusable) loses its neighbour-map
/// entry: with forwarding off its packets then pass to the kernel instead of going to a stale
/// next hop, and the next-hop cache is emptied so even a cached answer is not used.
#[test]
fn neighbour_map_entry_removed_stops_forwarding() {
    ka_tests::require_root();
    let ns = lab();
    ns.run(&["sysctl", "-qw", "net.ipv4.conf.all.forwarding=0"]).expect("forwarding off");
    let handle = ns
        .enter(|| {
            let lb0 = nix::net::if_::if_nametoindex("lb0").expect("ifindex");
            let mut loaded = common::Loaded::new();
            let d = DesiredState {
                services: vec![svc("198.51.100.1", 80, L4Proto::Tcp, Scheduler::Maglev, "10.1.0.10", 80, Method::Dr)],
                ..Default::default()
            };
            let mut writer = MapWriter::new();
            writer.apply(&mut loaded.ebpf, &d).expect("apply");
            let entry = ka_common::lb::NeighValue { ifindex: lb0, smac: LB0_MAC, dmac: RS1_MAC };
            let entries = std::collections::BTreeMap::from([(ip("10.1.0.10"), entry)]);
            writer.set_resolved(&mut loaded.ebpf, &entries).expect("set");
            let syn = Frame::tcp4(CLIENT4, "198.51.100.1", 40000, 80, SYN).build();
            let ack = Frame::tcp4(CLIENT4, "198.51.100.1", 40000, 80, ACK).build();
            let first = loaded.run_on(&syn, lb0).action;
            assert_eq!(
                ka::lb::writer::neighbour_entry(&loaded.ebpf, ip("10.1.0.10")).expect("read"),
                Some(entry),
                "the entry as written"
            );
            assert_eq!(writer.set_resolved(&mut loaded.ebpf, &Default::default()).expect("clear"), 1, "one removal");
            assert_eq!(ka::lb::writer::neighbour_entry(&loaded.ebpf, ip("10.1.0.10")).expect("read"), None);
            let second = loaded.run_on(&ack, lb0).action;
            (first, second, loaded.counters())
        })
        .expect("enter netns");
    let (first, second, c) = handle.join().expect("fixture thread");
    assert_eq!(first, XDP_TX, "forwarded while the entry exists");
    assert_eq!(second, XDP_PASS, "passed once the entry is gone (the cache was emptied)");
    assert_eq!((c[Counter::LbFibFwdDisabled.name()], c[Counter::PassNoNexthop.name()]), (2, 1), "{c:?}");
}

/// The destination-MAC check (on once the daemon writes its interfaces' MACs): a frame to a
/// service addressed to another host's MAC (flooded by a switch to every port), or to the
/// broadcast MAC, passes unforwarded and is counted `pass_not_our_mac`; the same packet
/// addressed to the director is forwarded. With the MACs removed the check is off again.
#[test]
fn lb_forwards_only_frames_addressed_to_its_mac() {
    ka_tests::require_root();
    let ns = lab();
    let handle = ns
        .enter(|| {
            let idx = |n: &str| nix::net::if_::if_nametoindex(n).expect("ifindex");
            let ifs = [idx("lb0"), idx("lb1")];
            let mut loaded = common::Loaded::new();
            let mut d = desired();
            d.neighbours[0].ifindex = ifs[1];
            MapWriter::new().apply(&mut loaded.ebpf, &d).expect("apply");
            let syn = Frame::tcp4(CLIENT4, "198.51.100.1", 40000, 80, SYN);
            let ours = syn.eth_dst;
            ka::lb::local_macs::install(&mut loaded.ebpf, &[ours].into_iter().collect()).expect("install");
            let mut failures = Vec::new();
            for (name, dst) in [("another host's MAC", [0x02, 0, 0, 0, 0x77, 0x77]), ("broadcast", [0xff; 6])] {
                let input = with_macs(syn.clone(), dst, syn.eth_src).build();
                let out = loaded.run_on(&input, ifs[0]);
                if out.action != XDP_PASS || out.data != input {
                    failures.push(format!("{name}: action {} (expected XDP_PASS, untouched)\n{}", out.action, hex_diff(&input, &out.data)));
                }
            }
            let c = loaded.counters();
            if c[Counter::PassNotOurMac.name()] != 2 || c[Counter::LbDr.name()] != 0 {
                failures.push(format!("after the flooded frames: pass_not_our_mac {} lb_dr {}", c[Counter::PassNotOurMac.name()], c[Counter::LbDr.name()]));
            }
            let out = loaded.run_on(&syn.build(), ifs[0]);
            let expected = with_macs(syn.clone(), RS1_MAC, LB0_MAC).build();
            if out.action != XDP_TX || out.data != expected {
                failures.push(format!("ours: action {}\n{}", out.action, hex_diff(&expected, &out.data)));
            }
            // A second local MAC whose slot the first holds (smaller, so it keeps it): found in
            // the hash map behind the slots.
            let slot = |m: [u8; 6]| ka_common::lb::local_mac_slot(u32::from_ne_bytes([m[2], m[3], m[4], m[5]]));
            let second = (1..=u16::MAX)
                .map(|i| [ours[0], ours[1], ours[2], ours[3], (i >> 8) as u8, i as u8])
                .find(|m| *m > ours && slot(*m) == slot(ours))
                .expect("a MAC sharing the slot");
            ka::lb::local_macs::install(&mut loaded.ebpf, &[ours, second].into_iter().collect()).expect("install two");
            let slots: aya::maps::Array<_, u64> = aya::maps::Array::try_from(loaded.ebpf.map(ka_common::lb::LOCAL_MAC_SLOTS_MAP).expect("slots")).expect("array");
            let held = slots.get(&slot(ours), 0).expect("slot");
            if held != u64::from_ne_bytes([ours[0], ours[1], ours[2], ours[3], ours[4], ours[5], 0, 0]) {
                failures.push(format!("slot of {ours:02x?} holds {held:#x}"));
            }
            let out = loaded.run_on(&with_macs(syn.clone(), second, syn.eth_src).build(), ifs[0]);
            if out.action != XDP_TX {
                failures.push(format!("second local MAC (hash map): action {} (expected XDP_TX)", out.action));
            }
            ka::lb::local_macs::install(&mut loaded.ebpf, &Default::default()).expect("check off");
            let out = loaded.run_on(&with_macs(syn.clone(), [0x02, 0, 0, 0, 0x77, 0x77], syn.eth_src).build(), ifs[0]);
            if out.action != XDP_TX {
                failures.push(format!("check off: action {} (expected XDP_TX)", out.action));
            }
            let c = loaded.counters();
            if c[Counter::PassNotOurMac.name()] != 2 || c[Counter::LbDr.name()] != 3 {
                failures.push(format!("at the end: pass_not_our_mac {} lb_dr {}", c[Counter::PassNotOurMac.name()], c[Counter::LbDr.name()]));
            }
            failures
        })
        .expect("enter netns");
    let failures = handle.join().expect("fixture thread");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The IPv4 service slots (`KA_SVC_SLOTS4`): of two services whose keys share a slot, one holds
/// it and the other is found in the hash map; both forward. Removing the slot's holder frees
/// the slot (its packets then pass: no stale slot serves a removed service) and the other
/// still forwards; a service written again takes the free slot.
#[test]
fn service_slots_and_the_hash_map_behind_them() {
    use ka_common::lb::{svc_slot4, ServiceKey4, ServiceSlot4, SVC_SLOTS4_MAP};
    ka_tests::require_root();
    let ns = lab();
    let handle = ns
        .enter(|| {
            let lb0 = nix::net::if_::if_nametoindex("lb0").expect("ifindex");
            let key = |port: u16| ServiceKey4 { addr: [198, 51, 100, 1], port: port.to_be_bytes(), proto: 6, _pad: 0 };
            // A port whose key shares port 80's slot.
            let other = (81..u16::MAX).find(|p| svc_slot4(&key(*p)) == svc_slot4(&key(80))).expect("a colliding port");
            let spec = |port| svc("198.51.100.1", port, L4Proto::Tcp, Scheduler::Maglev, "10.1.0.10", 80, Method::Dr);
            let slot = |l: &common::Loaded| -> ServiceSlot4 {
                let arr: aya::maps::Array<_, ServiceSlot4> =
                    aya::maps::Array::try_from(l.ebpf.map(SVC_SLOTS4_MAP).expect("slot map")).expect("array");
                arr.get(&svc_slot4(&key(80)), 0).expect("slot")
            };
            let syn = |port: u16| with_macs(Frame::tcp4(CLIENT4, "198.51.100.1", 40000, port, SYN), LB0_MAC, MAC_A).build();
            let mut loaded = common::Loaded::new();
            let mut writer = MapWriter::new();
            writer.apply(&mut loaded.ebpf, &DesiredState { services: vec![spec(80), spec(other)], ..Default::default() }).expect("apply");
            let held = slot(&loaded);
            assert!(held.key == key(80) || held.key == key(other), "the slot holds one of the two keys: {held:?}");
            for port in [80, other] {
                let a = loaded.run_on(&syn(port), lb0).action;
                assert!(a == XDP_TX || a == XDP_REDIRECT, "port {port} forwarded: action {a}");
            }
            assert_eq!(loaded.counters()[Counter::LbNewFlow.name()], 2);
            // The holder goes: its slot is freed, its packets pass, the other key still forwards.
            let (gone, kept) = if held.key == key(80) { (80, other) } else { (other, 80) };
            writer.apply(&mut loaded.ebpf, &DesiredState { services: vec![spec(kept)], ..Default::default() }).expect("apply");
            assert_eq!(slot(&loaded), ServiceSlot4::default(), "the removed service's slot is free");
            assert_eq!(loaded.run_on(&syn(gone), lb0).action, XDP_PASS, "port {gone} is no service any more");
            let a = loaded.run_on(&syn(kept), lb0).action;
            assert!(a == XDP_TX || a == XDP_REDIRECT, "port {kept} still forwarded: action {a}");
            // Written again (another scheduler rewrites its value), the kept key takes the free
            // slot.
            let mut rewritten = spec(kept);
            rewritten.scheduler = Scheduler::SourceHash;
            writer.apply(&mut loaded.ebpf, &DesiredState { services: vec![rewritten], ..Default::default() }).expect("apply");
            assert_eq!(slot(&loaded).key, key(kept), "the free slot taken by the rewritten key");
            let a = loaded.run_on(&syn(kept), lb0).action;
            assert!(a == XDP_TX || a == XDP_REDIRECT, "port {kept} forwarded from its slot: action {a}");
        })
        .expect("enter netns");
    handle.join().expect("test thread");
}
