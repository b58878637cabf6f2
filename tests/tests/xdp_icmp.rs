//! Packet-fixture tests of `ka_xdp`'s ICMP handling through BPF_PROG_TEST_RUN: errors about
//! VIP flows forwarded to their real server (DR, TUN, NAT; IPv4 and IPv6), errors from a NAT
//! real server's side translated back to the client, everything else passed per reason
//! (non-errors, no VIP flow, truncated or inconsistent embedded packets, mastership off), and
//! "fragmentation needed" / "packet too big" built in XDP for packets too big for the path to
//! their real server. Each case runs on freshly loaded maps seeded through the userspace map
//! writer, in a namespace whose veths, routes and permanent neighbours give `bpf_fib_lookup`
//! real answers; it checks the verdict, the output bytes (hex diff) and every counter.

mod common;

use std::net::IpAddr;

use ka::lb::{
    BackendSpec, DesiredState, L4Proto, Method, Scheduler, ServiceSpec, TunnelSource,
};
use ka_common::stats::Counter;
use ka_tests::{
    netns::Netns,
    packet::{flow_label, set_flow_label, tunnel, Frame},
};

use common::{
    fixture::{run_cases, PacketCase, Step},
    XDP_PASS, XDP_REDIRECT, XDP_TX,
};

const LB0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const LB1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];
const RS_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x20, 0x20];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xfe, 0xfe];

/// Client, behind the gateway of lb0.
const CLIENT4: &str = "198.19.0.1";
const CLIENT6: &str = "fd00:198:18:c::1";
/// A router on the client's side of the director.
const ROUTER4: &str = "198.19.255.1";
const ROUTER6: &str = "fd00:198:18:ff::1";
/// A router on the real servers' side.
const RS_ROUTER6: &str = "fd00:198:18:2::fe";
/// The real server behind lb1.
const RS4: &str = "198.18.2.20";
const RS6: &str = "fd00:198:18:2::20";
/// A real server behind RS4 on a route with a locked MTU of 1400.
const RS3: &str = "198.18.3.30";
/// A real server behind RS4 on a route with a locked MTU of 400.
const RS_SMALL: &str = "198.18.4.40";
const TUN_SRC4: &str = "198.18.2.1";
const TUN_SRC6: &str = "fd00:198:18:2::1";

const VIP_DR4: &str = "198.18.100.1";
const VIP_TUN4: &str = "198.18.100.2";
const VIP_NAT4_UDP: &str = "198.18.100.3";
const VIP_NAT4_TCP: &str = "198.18.100.4";
const VIP_DR4_MTU: &str = "198.18.100.5";
const VIP_DR4_SMALL: &str = "198.18.100.6";
const VIP_GATED4: &str = "198.18.100.9";
const VIP_DR6: &str = "fd00:198:18:100::1";
const VIP_TUN6: &str = "fd00:198:18:100::2";
const VIP_NAT6: &str = "fd00:198:18:100::3";

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SYN_ACK: u8 = SYN | ACK;

/// ICMP types and codes of the fixtures.
const DEST_UNREACH: u8 = 3;
const PORT_UNREACH: u8 = 3;
const FRAG_NEEDED: u8 = 4;
const TIME_EXCEEDED: u8 = 11;
const V6_DEST_UNREACH: u8 = 1;
const V6_ADDR_UNREACH: u8 = 3;
const V6_PORT_UNREACH: u8 = 4;
const V6_TOO_BIG: u8 = 2;
const V6_TIME_EXCEEDED: u8 = 3;

/// The lab: lb0 (198.18.1.1/24, fd00:198:18:1::1/64) towards the clients through the default
/// gateway .254 / ::fe; lb1 (198.18.2.1/24, fd00:198:18:2::1/64) with the real server .20 /
/// ::20, and behind it 198.18.3.0/24 and 198.18.4.0/24 on routes whose MTU is locked at 1400
/// and 400.
fn lab() -> Netns {
    let ns = Netns::new("icmp").expect("netns");
    let cmds: &[&str] = &[
        "ip link add lb0 address 02:00:00:00:01:01 type veth peer name lb0p",
        "ip link add lb1 address 02:00:00:00:02:01 type veth peer name lb1p",
        "ip link set lb0 up",
        "ip link set lb0p up",
        "ip link set lb1 up",
        "ip link set lb1p up",
        "ip addr add 198.18.1.1/24 dev lb0",
        "ip addr add 198.18.2.1/24 dev lb1",
        "ip addr add fd00:198:18:1::1/64 dev lb0 nodad",
        "ip addr add fd00:198:18:2::1/64 dev lb1 nodad",
        "sysctl -qw net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1",
        "ip neigh replace 198.18.1.254 lladdr 02:00:00:00:fe:fe dev lb0 nud permanent",
        "ip neigh replace fd00:198:18:1::fe lladdr 02:00:00:00:fe:fe dev lb0 nud permanent",
        "ip neigh replace 198.18.2.20 lladdr 02:00:00:00:20:20 dev lb1 nud permanent",
        "ip neigh replace fd00:198:18:2::20 lladdr 02:00:00:00:20:20 dev lb1 nud permanent",
        "ip route add default via 198.18.1.254 dev lb0",
        "ip -6 route add default via fd00:198:18:1::fe dev lb0",
        "ip route add 198.18.3.0/24 via 198.18.2.20 dev lb1 mtu lock 1400",
        "ip route add 198.18.4.0/24 via 198.18.2.20 dev lb1 mtu lock 400",
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

fn svc(vip: &str, port: u16, proto: L4Proto, rs: &str, rs_port: u16, method: Method) -> ServiceSpec {
    ServiceSpec {
        vip: ip(vip),
        port,
        proto,
        scheduler: Scheduler::Maglev,
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

/// The services of every case; indexes are used by `PacketCase::service_packets`.
fn desired() -> DesiredState {
    use L4Proto::{Tcp, Udp};
    use Method::{Dr, Nat, Tun};
    let mut gated = svc(VIP_GATED4, 80, Tcp, RS4, 80, Dr);
    gated.master_slot = Some(5);
    DesiredState {
        services: vec![
            svc(VIP_DR4, 80, Tcp, RS4, 80, Dr),
            svc(VIP_TUN4, 80, Tcp, RS4, 80, Tun),
            svc(VIP_NAT4_UDP, 53, Udp, RS4, 5353, Nat),
            svc(VIP_NAT4_TCP, 80, Tcp, RS4, 8080, Nat),
            svc(VIP_DR6, 80, Tcp, RS6, 80, Dr),
            svc(VIP_TUN6, 53, Udp, RS6, 53, Tun),
            svc(VIP_NAT6, 443, Tcp, RS6, 8443, Nat),
            gated,
            svc(VIP_DR4_MTU, 80, Tcp, RS3, 80, Dr),
            svc(VIP_DR4_SMALL, 80, Tcp, RS_SMALL, 80, Dr),
        ],
        tunnel_src_v4: Some(TunnelSource {
            addr: ip(TUN_SRC4),
            host_bits: 0,
        }),
        tunnel_src_v6: Some(TunnelSource {
            addr: ip(TUN_SRC6),
            host_bits: 0,
        }),
        neighbours: vec![],
    }
}

fn with_macs(mut f: Frame, dst: [u8; 6], src: [u8; 6]) -> Frame {
    f.eth_dst = dst;
    f.eth_src = src;
    f
}

/// From the client side: the gateway's MAC to lb0's.
fn from_client(f: Frame) -> Frame {
    with_macs(f, LB0_MAC, GW_MAC)
}

/// From the real-server side: the real server's MAC to lb1's.
fn from_rs(f: Frame) -> Frame {
    with_macs(f, LB1_MAC, RS_MAC)
}

/// A step whose frame passes untouched.
fn pass(input: Vec<u8>) -> Step {
    Step {
        expected_output: input.clone(),
        input,
        iface: 0,
        expected_action: XDP_PASS,
    }
}


/// `n` bytes of payload that differ from each other (so a checksum over them means something).
fn filler(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

/// Cases of errors about VIP flows that reach the real server or the client.
fn forward_cases() -> Vec<PacketCase> {
    use Counter::*;
    let to_rs = |f: Frame| with_macs(f, RS_MAC, LB1_MAC).build();
    let to_gw = |f: Frame| with_macs(f, GW_MAC, LB0_MAC).build();
    // What the VIPs send to the client (replies of DR/TUN real servers, NATed replies).
    let dr4_reply = Frame::tcp4(VIP_DR4, CLIENT4, 80, 40000, SYN_ACK).ip_packet();
    let tun4_reply = Frame::tcp4(VIP_TUN4, CLIENT4, 80, 40000, ACK)
        .ipv4_frag(0x4000)
        .payload(&filler(1400))
        .ip_packet();
    let nat4_udp_reply = Frame::udp4(VIP_NAT4_UDP, CLIENT4, 53, 40000).payload(b"answer");
    let dr6_reply = Frame::tcp6(VIP_DR6, CLIENT6, 80, 40000, SYN_ACK).ip_packet();
    let tun6_reply = Frame::udp6(VIP_TUN6, CLIENT6, 53, 40000).payload(b"answer").ip_packet();
    let nat6_reply = Frame::tcp6(VIP_NAT6, CLIENT6, 443, 40000, SYN_ACK).payload(b"hello");
    let tun4_err = from_client(Frame::icmp4_error(
        ROUTER4,
        VIP_TUN4,
        DEST_UNREACH,
        FRAG_NEEDED,
        [0, 0, 0x05, 0x00],
        &tun4_reply[..548],
    ))
    .build();
    let dr6_err = from_client(Frame::icmp6_error(
        CLIENT6,
        VIP_DR6,
        V6_DEST_UNREACH,
        V6_PORT_UNREACH,
        [0; 4],
        &dr6_reply,
    ));
    let tun6_err = from_client(Frame::icmp6_error(
        ROUTER6,
        VIP_TUN6,
        V6_TOO_BIG,
        0,
        1280u32.to_be_bytes(),
        &tun6_reply,
    ))
    .build();
    let dr4_err = from_client(Frame::icmp4_error(
        ROUTER4,
        VIP_DR4,
        TIME_EXCEEDED,
        0,
        [0; 4],
        &dr4_reply,
    ));
    vec![
        PacketCase {
            name: "dr4: time exceeded about a VIP reply goes to the flow's real server (conn table)",
            steps: vec![
                Step {
                    input: from_client(Frame::tcp4(CLIENT4, VIP_DR4, 40000, 80, SYN)).build(),
                    iface: 0,
                    expected_action: XDP_REDIRECT,
                    expected_output: to_rs(Frame::tcp4(CLIENT4, VIP_DR4, 40000, 80, SYN)),
                },
                Step {
                    input: dr4_err.build(),
                    iface: 0,
                    expected_action: XDP_REDIRECT,
                    expected_output: to_rs(dr4_err.clone()),
                },
            ],
            counters: vec![
                (Ipv4, 2),
                (Tcp, 1),
                (Icmp, 1),
                (LbNewFlow, 1),
                (LbConnHit, 1),
                (LbFibHit, 1),
                (LbDr, 2),
                (LbIcmpForward, 1),
                (VerdictRedirect, 2),
            ],
            service_packets: vec![(0, 2, 2)],
        },
        PacketCase {
            name: "tun4: frag needed about a VIP reply (548-byte quote) goes IPIP to the real server",
            steps: vec![Step {
                expected_output: tunnel(&tun4_err, RS_MAC, LB1_MAC, TUN_SRC4, RS4),
                input: tun4_err,
                iface: 0,
                expected_action: XDP_REDIRECT,
            }],
            counters: vec![
                (Ipv4, 1),
                (Icmp, 1),
                (LbNewFlow, 1),
                (LbFibHit, 1),
                (LbTun, 1),
                (LbIcmpForward, 1),
                (VerdictRedirect, 1),
            ],
            service_packets: vec![(1, 1, 1)],
        },
        PacketCase {
            name: "nat4 udp: port unreachable about the NATed reply: outer dst and quoted src:port \
                   become the real server's, checksums fixed",
            steps: vec![
                Step {
                    input: from_client(
                        Frame::udp4(CLIENT4, VIP_NAT4_UDP, 40000, 53).payload(b"query"),
                    )
                    .build(),
                    iface: 0,
                    expected_action: XDP_REDIRECT,
                    expected_output: to_rs(
                        Frame::udp4(CLIENT4, RS4, 40000, 5353).payload(b"query"),
                    ),
                },
                Step {
                    input: from_rs(Frame::udp4(RS4, CLIENT4, 5353, 40000).payload(b"answer"))
                        .build(),
                    iface: 1,
                    expected_action: XDP_REDIRECT,
                    expected_output: to_gw(nat4_udp_reply.clone()),
                },
                Step {
                    input: from_client(Frame::icmp4_error(
                        CLIENT4,
                        VIP_NAT4_UDP,
                        DEST_UNREACH,
                        PORT_UNREACH,
                        [0; 4],
                        &nat4_udp_reply.ip_packet(),
                    ))
                    .build(),
                    iface: 0,
                    expected_action: XDP_REDIRECT,
                    expected_output: to_rs(Frame::icmp4_error(
                        CLIENT4,
                        RS4,
                        DEST_UNREACH,
                        PORT_UNREACH,
                        [0; 4],
                        &Frame::udp4(RS4, CLIENT4, 5353, 40000)
                            .payload(b"answer")
                            .ip_packet(),
                    )),
                },
            ],
            counters: vec![
                (Ipv4, 3),
                (Udp, 2),
                (Icmp, 1),
                (LbNewFlow, 1),
                (LbConnHit, 1),
                (LbFibHit, 2),
                (LbNat, 2),
                (LbNatReply, 1),
                (LbIcmpForward, 1),
                (VerdictRedirect, 3),
            ],
            service_packets: vec![(2, 3, 2)],
        },
        PacketCase {
            name: "nat4 tcp, RFC 792 8-byte quote: ports translated, the unquoted TCP checksum \
                   left alone",
            steps: vec![Step {
                input: from_client(Frame::icmp4_error(
                    ROUTER4,
                    VIP_NAT4_TCP,
                    TIME_EXCEEDED,
                    0,
                    [0; 4],
                    &Frame::tcp4(VIP_NAT4_TCP, CLIENT4, 80, 40000, SYN_ACK).ip_packet()[..28],
                ))
                .build(),
                iface: 0,
                expected_action: XDP_REDIRECT,
                expected_output: to_rs(Frame::icmp4_error(
                    ROUTER4,
                    RS4,
                    TIME_EXCEEDED,
                    0,
                    [0; 4],
                    &Frame::tcp4(RS4, CLIENT4, 8080, 40000, SYN_ACK).ip_packet()[..28],
                )),
            }],
            counters: vec![
                (Ipv4, 1),
                (Icmp, 1),
                (LbNewFlow, 1),
                (LbFibHit, 1),
                (LbNat, 1),
                (LbIcmpForward, 1),
                (VerdictRedirect, 1),
            ],
            service_packets: vec![(3, 1, 1)],
        },
        PacketCase {
            name: "dr6: port unreachable about a VIP reply goes to the real server",
            steps: vec![Step {
                input: dr6_err.build(),
                iface: 0,
                expected_action: XDP_REDIRECT,
                expected_output: to_rs(dr6_err.clone()),
            }],
            counters: vec![
                (Ipv6, 1),
                (Icmp, 1),
                (LbNewFlow, 1),
                (LbFibHit, 1),
                (LbDr, 1),
                (LbIcmpForward, 1),
                (VerdictRedirect, 1),
            ],
            service_packets: vec![(4, 1, 1)],
        },
        PacketCase {
            name: "tun6: packet too big about a VIP reply goes IP6IP6 to the real server",
            steps: vec![Step {
                // The flow label is the hash of the error's flow (the embedded reply reversed:
                // client -> VIP), computed from ka-common's hash, not copied from the output.
                expected_output: set_flow_label(
                    tunnel(&tun6_err, RS_MAC, LB1_MAC, TUN_SRC6, RS6),
                    flow_label(CLIENT6, VIP_TUN6, 40000, 53, 17),
                ),
                input: tun6_err,
                iface: 0,
                expected_action: XDP_REDIRECT,
            }],
            counters: vec![
                (Ipv6, 1),
                (Icmp, 1),
                (LbNewFlow, 1),
                (LbFibHit, 1),
                (LbTun, 1),
                (LbIcmpForward, 1),
                (VerdictRedirect, 1),
            ],
            service_packets: vec![(5, 1, 1)],
        },
        PacketCase {
            name: "nat6 tcp: time exceeded about the NATed reply: outer dst (pseudo-header) and \
                   quoted src:port become the real server's",
            steps: vec![Step {
                input: from_client(Frame::icmp6_error(
                    ROUTER6,
                    VIP_NAT6,
                    V6_TIME_EXCEEDED,
                    0,
                    [0; 4],
                    &nat6_reply.ip_packet(),
                ))
                .build(),
                iface: 0,
                expected_action: XDP_REDIRECT,
                expected_output: to_rs(Frame::icmp6_error(
                    ROUTER6,
                    RS6,
                    V6_TIME_EXCEEDED,
                    0,
                    [0; 4],
                    &Frame::tcp6(RS6, CLIENT6, 8443, 40000, SYN_ACK)
                        .payload(b"hello")
                        .ip_packet(),
                )),
            }],
            counters: vec![
                (Ipv6, 1),
                (Icmp, 1),
                (LbNewFlow, 1),
                (LbFibHit, 1),
                (LbNat, 1),
                (LbIcmpForward, 1),
                (VerdictRedirect, 1),
            ],
            service_packets: vec![(6, 1, 1)],
        },
        PacketCase {
            name: "nat4 udp, real-server side: port unreachable from the real server about the \
                   DNATed query goes to the client from the VIP",
            steps: vec![
                Step {
                    input: from_client(
                        Frame::udp4(CLIENT4, VIP_NAT4_UDP, 40000, 53).payload(b"query"),
                    )
                    .build(),
                    iface: 0,
                    expected_action: XDP_REDIRECT,
                    expected_output: to_rs(
                        Frame::udp4(CLIENT4, RS4, 40000, 5353).payload(b"query"),
                    ),
                },
                Step {
                    input: from_rs(Frame::icmp4_error(
                        RS4,
                        CLIENT4,
                        DEST_UNREACH,
                        PORT_UNREACH,
                        [0; 4],
                        &Frame::udp4(CLIENT4, RS4, 40000, 5353)
                            .payload(b"query")
                            .ip_packet(),
                    ))
                    .build(),
                    iface: 1,
                    expected_action: XDP_REDIRECT,
                    expected_output: to_gw(Frame::icmp4_error(
                        VIP_NAT4_UDP,
                        CLIENT4,
                        DEST_UNREACH,
                        PORT_UNREACH,
                        [0; 4],
                        &Frame::udp4(CLIENT4, VIP_NAT4_UDP, 40000, 53)
                            .payload(b"query")
                            .ip_packet(),
                    )),
                },
            ],
            counters: vec![
                (Ipv4, 2),
                (Udp, 1),
                (Icmp, 1),
                (LbNewFlow, 1),
                (LbFibHit, 2),
                (LbNat, 1),
                (LbNatReply, 1),
                (LbIcmpReply, 1),
                (VerdictRedirect, 2),
            ],
            service_packets: vec![(2, 2, 1)],
        },
        PacketCase {
            name: "nat6 tcp, real-server side: address unreachable from a router near the real \
                   server goes to the client from the VIP",
            steps: vec![
                Step {
                    input: from_client(Frame::tcp6(CLIENT6, VIP_NAT6, 40000, 443, SYN)).build(),
                    iface: 0,
                    expected_action: XDP_REDIRECT,
                    expected_output: to_rs(Frame::tcp6(CLIENT6, RS6, 40000, 8443, SYN)),
                },
                Step {
                    input: from_rs(Frame::icmp6_error(
                        RS_ROUTER6,
                        CLIENT6,
                        V6_DEST_UNREACH,
                        V6_ADDR_UNREACH,
                        [0; 4],
                        &Frame::tcp6(CLIENT6, RS6, 40000, 8443, SYN).ip_packet(),
                    ))
                    .build(),
                    iface: 1,
                    expected_action: XDP_REDIRECT,
                    expected_output: to_gw(Frame::icmp6_error(
                        VIP_NAT6,
                        CLIENT6,
                        V6_DEST_UNREACH,
                        V6_ADDR_UNREACH,
                        [0; 4],
                        &Frame::tcp6(CLIENT6, VIP_NAT6, 40000, 443, SYN).ip_packet(),
                    )),
                },
            ],
            counters: vec![
                (Ipv6, 2),
                (Tcp, 1),
                (Icmp, 1),
                (LbNewFlow, 1),
                (LbFibHit, 2),
                (LbNat, 1),
                (LbNatReply, 1),
                (LbIcmpReply, 1),
                (VerdictRedirect, 2),
            ],
            service_packets: vec![(6, 2, 1)],
        },
    ]
}

/// Cases that pass to the kernel, each counted by its reason.
fn pass_cases() -> Vec<PacketCase> {
    use Counter::*;
    let dr4_reply = Frame::tcp4(VIP_DR4, CLIENT4, 80, 40000, SYN_ACK).ip_packet();
    let dr6_reply = Frame::tcp6(VIP_DR6, CLIENT6, 80, 40000, SYN_ACK).ip_packet();
    let err4 = |to: &str, quoted: &[u8]| {
        from_client(Frame::icmp4_error(CLIENT4, to, DEST_UNREACH, PORT_UNREACH, [0; 4], quoted))
            .build()
    };
    let err6 = |to: &str, quoted: &[u8]| {
        from_client(Frame::icmp6_error(
            CLIENT6,
            to,
            V6_DEST_UNREACH,
            V6_PORT_UNREACH,
            [0; 4],
            quoted,
        ))
        .build()
    };
    let v4 = |c: Counter| vec![(Ipv4, 1), (Icmp, 1), (c, 1), (VerdictPass, 1)];
    let v6 = |c: Counter| vec![(Ipv6, 1), (Icmp, 1), (c, 1), (VerdictPass, 1)];
    let case = |name, input, counters| PacketCase {
        name,
        steps: vec![pass(input)],
        counters,
        service_packets: vec![],
    };
    let mut bad_version = dr4_reply.clone();
    bad_version[0] = 0x65;
    let mut short_ihl = dr4_reply.clone();
    short_ihl[0] = 0x44;
    let mut fragment = dr4_reply.clone();
    fragment[6..8].copy_from_slice(&0x0001u16.to_be_bytes());
    let mut bad_version6 = dr6_reply.clone();
    bad_version6[0] = 0x40;
    let mut padded = err4(VIP_DR4, &dr4_reply[..24]);
    padded.extend_from_slice(&[0; 8]);
    vec![
        case(
            "echo request to a VIP is not an error",
            from_client(Frame::icmp4(CLIENT4, VIP_DR4)).build(),
            v4(PassIcmpNotError),
        ),
        case(
            "neighbour solicitation is not an error",
            from_client(Frame::icmp6_error(CLIENT6, VIP_DR6, 135, 0, [0; 4], &[0; 16])).build(),
            v6(PassIcmpNotError),
        ),
        case(
            "v4 error about a VIP port with no service and no NAT entry",
            err4(
                VIP_DR4,
                &Frame::tcp4(VIP_DR4, CLIENT4, 81, 40000, SYN_ACK).ip_packet(),
            ),
            v4(PassIcmpNotVip),
        ),
        case(
            "v6 error about someone else's packet",
            err6(
                "fd00:198:18:5::1",
                &Frame::udp6("fd00:198:18:5::1", CLIENT6, 53, 40000).ip_packet(),
            ),
            v6(PassIcmpNotVip),
        ),
        case(
            "v4 error not addressed to the quoted packet's source",
            err4("198.18.1.1", &dr4_reply),
            v4(PassIcmpNotVip),
        ),
        case(
            "v4 error quoting ICMP (an echo reply from the VIP)",
            err4(VIP_DR4, &Frame::icmp4(VIP_DR4, CLIENT4).ip_packet()),
            v4(PassIcmpNotVip),
        ),
        case(
            "nat4 error from the real-server side with no NAT entry",
            from_rs(Frame::icmp4_error(
                RS4,
                CLIENT4,
                DEST_UNREACH,
                PORT_UNREACH,
                [0; 4],
                &Frame::udp4(CLIENT4, RS4, 40000, 5353).ip_packet(),
            ))
            .build(),
            v4(PassIcmpNotVip),
        ),
        case(
            "v4 quote cut inside the IP header",
            err4(VIP_DR4, &dr4_reply[..12]),
            v4(PassIcmpInnerTruncated),
        ),
        case(
            "v4 quote with 4 bytes of TCP",
            err4(VIP_DR4, &dr4_reply[..24]),
            v4(PassIcmpInnerTruncated),
        ),
        case(
            "v4 quote with 4 bytes of TCP and Ethernet padding after the packet",
            padded,
            v4(PassIcmpInnerTruncated),
        ),
        case(
            "v6 quote cut inside the IPv6 header",
            err6(VIP_DR6, &dr6_reply[..30]),
            v6(PassIcmpInnerTruncated),
        ),
        case(
            "v6 quote with 6 bytes of TCP",
            err6(VIP_DR6, &dr6_reply[..46]),
            v6(PassIcmpInnerTruncated),
        ),
        case(
            "v4 quote of version 6",
            err4(VIP_DR4, &bad_version),
            v4(PassIcmpInnerBad),
        ),
        case(
            "v4 quote with IHL 4",
            err4(VIP_DR4, &short_ihl),
            v4(PassIcmpInnerBad),
        ),
        case(
            "v6 quote of version 4",
            err6(VIP_DR6, &bad_version6),
            v6(PassIcmpInnerBad),
        ),
        case(
            "v4 quote of a non-first fragment",
            err4(VIP_DR4, &fragment),
            v4(PassIcmpInnerFragment),
        ),
        case(
            "vlan-tagged error about a VIP flow is left to the kernel",
            from_client(
                Frame::icmp4_error(CLIENT4, VIP_DR4, DEST_UNREACH, PORT_UNREACH, [0; 4], &dr4_reply)
                    .vlan(7),
            )
            .build(),
            vec![(Vlan, 1), (Ipv4, 1), (Icmp, 1), (PassLbUnsupported, 1), (VerdictPass, 1)],
        ),
        case(
            "mastership off: an error about the VIP's flow passes",
            err4(
                VIP_GATED4,
                &Frame::tcp4(VIP_GATED4, CLIENT4, 80, 40000, SYN_ACK).ip_packet(),
            ),
            v4(PassNotMaster),
        ),
    ]
}

/// Cases of packets too big for the path to their real server.
fn too_big_cases() -> Vec<PacketCase> {
    use Counter::*;
    // 1500-byte IP packets: with IPIP's 20 or IP6IP6's 40 bytes they exceed lb1's 1500.
    let tun4 = |frag: u16, payload: usize| {
        from_client(
            Frame::tcp4(CLIENT4, VIP_TUN4, 40000, 80, ACK)
                .ipv4_frag(frag)
                .payload(&filler(payload)),
        )
    };
    let big4 = tun4(0x4000, 1460);
    let fits4 = tun4(0x4000, 1440).build();
    let big6 = from_client(Frame::udp6(CLIENT6, VIP_TUN6, 40000, 53).payload(&filler(1452)));
    let dr_big = from_client(
        Frame::tcp4(CLIENT4, VIP_DR4_MTU, 40000, 80, ACK)
            .ipv4_frag(0x4000)
            .payload(&filler(1410)),
    );
    let dr_small = from_client(
        Frame::tcp4(CLIENT4, VIP_DR4_SMALL, 40000, 80, ACK)
            .ipv4_frag(0x4000)
            .payload(&filler(410)),
    );
    let reply = |f: Frame| with_macs(f, GW_MAC, LB0_MAC).build();
    vec![
        PacketCase {
            name: "tun4 with DF, 1500 bytes: frag needed from the VIP, MTU 1480, 548-byte quote",
            steps: vec![Step {
                input: big4.build(),
                iface: 0,
                expected_action: XDP_TX,
                expected_output: reply(
                    Frame::icmp4_error(
                        VIP_TUN4,
                        CLIENT4,
                        DEST_UNREACH,
                        FRAG_NEEDED,
                        [0, 0, 0x05, 0xc8],
                        &big4.ip_packet()[..548],
                    )
                    .ipv4_id(0),
                ),
            }],
            counters: vec![
                (Ipv4, 1),
                (Tcp, 1),
                (LbNewFlow, 1),
                (LbIcmpTooBig, 1),
                (VerdictTx, 1),
            ],
            service_packets: vec![(1, 0, 0)],
        },
        PacketCase {
            name: "tun4 with DF, 1480 bytes: fits once encapsulated",
            steps: vec![Step {
                expected_output: tunnel(&fits4, RS_MAC, LB1_MAC, TUN_SRC4, RS4),
                input: fits4,
                iface: 0,
                expected_action: XDP_REDIRECT,
            }],
            counters: vec![
                (Ipv4, 1),
                (Tcp, 1),
                (LbNewFlow, 1),
                (LbFibHit, 1),
                (LbTun, 1),
                (VerdictRedirect, 1),
            ],
            service_packets: vec![(1, 1, 1)],
        },
        PacketCase {
            name: "tun4 without DF, 1500 bytes: passes to the kernel, which may fragment",
            steps: vec![pass(tun4(0, 1460).build())],
            counters: vec![
                (Ipv4, 1),
                (Tcp, 1),
                (LbNewFlow, 1),
                (PassTooBig, 1),
                (VerdictPass, 1),
            ],
            service_packets: vec![(1, 0, 0)],
        },
        PacketCase {
            name: "tun6, 1500 bytes: packet too big from the VIP, MTU 1460, 1280-byte answer",
            steps: vec![Step {
                input: big6.build(),
                iface: 0,
                expected_action: XDP_TX,
                expected_output: reply(Frame::icmp6_error(
                    VIP_TUN6,
                    CLIENT6,
                    V6_TOO_BIG,
                    0,
                    1460u32.to_be_bytes(),
                    &big6.ip_packet()[..1232],
                )),
            }],
            counters: vec![
                (Ipv6, 1),
                (Udp, 1),
                (LbNewFlow, 1),
                (LbIcmpTooBig, 1),
                (VerdictTx, 1),
            ],
            service_packets: vec![(5, 0, 0)],
        },
        PacketCase {
            name: "dr4 with DF over a route locked at MTU 1400: frag needed, MTU 1400",
            steps: vec![Step {
                input: dr_big.build(),
                iface: 0,
                expected_action: XDP_TX,
                expected_output: reply(
                    Frame::icmp4_error(
                        VIP_DR4_MTU,
                        CLIENT4,
                        DEST_UNREACH,
                        FRAG_NEEDED,
                        [0, 0, 0x05, 0x78],
                        &dr_big.ip_packet()[..548],
                    )
                    .ipv4_id(0),
                ),
            }],
            counters: vec![
                (Ipv4, 1),
                (Tcp, 1),
                (LbNewFlow, 1),
                (LbIcmpTooBig, 1),
                (VerdictTx, 1),
            ],
            service_packets: vec![(8, 0, 0)],
        },
        PacketCase {
            name: "dr4 with DF, 450 bytes over a route locked at MTU 400: frag needed, MTU 400, \
                   256-byte quote",
            steps: vec![Step {
                input: dr_small.build(),
                iface: 0,
                expected_action: XDP_TX,
                expected_output: reply(
                    Frame::icmp4_error(
                        VIP_DR4_SMALL,
                        CLIENT4,
                        DEST_UNREACH,
                        FRAG_NEEDED,
                        [0, 0, 0x01, 0x90],
                        &dr_small.ip_packet()[..256],
                    )
                    .ipv4_id(0),
                ),
            }],
            counters: vec![
                (Ipv4, 1),
                (Tcp, 1),
                (LbNewFlow, 1),
                (LbIcmpTooBig, 1),
                (VerdictTx, 1),
            ],
            service_packets: vec![(9, 0, 0)],
        },
    ]
}

/// Runs every case set in the lab namespace and reports all failures at once.
fn run_in_lab(cases: fn() -> Vec<PacketCase>) {
    ka_tests::require_root();
    let ns = lab();
    let handle = ns
        .enter(move || {
            let idx = |n: &str| nix::net::if_::if_nametoindex(n).expect("ifindex");
            run_cases(&cases(), &desired(), &[idx("lb0"), idx("lb1")])
        })
        .expect("enter netns");
    let failures = handle.join().expect("fixture thread");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Errors about VIP flows reach the flow's real server (DR, TUN, NAT with translation) or,
/// from a NAT real server's side, the client.
#[test]
fn icmp_errors_reach_the_right_party() {
    run_in_lab(forward_cases);
}

/// Everything that is not an error about a VIP flow passes to the kernel, counted by reason;
/// malformed quotes never reach the forwarding code.
#[test]
fn icmp_others_pass_per_reason() {
    run_in_lab(pass_cases);
}

/// Packets too big for the path to their real server get frag-needed / packet-too-big built
/// in XDP (exact bytes), or pass when IPv4 allows fragmentation.
#[test]
fn too_big_answered_from_the_vip() {
    run_in_lab(too_big_cases);
}

/// Reports the verifier's work for the whole program (the ICMP paths included): not a target,
/// a number to watch against the 1M-instruction limit.
#[test]
fn verifier_accepts_ka_xdp() {
    let loaded = common::Loaded::new();
    let prog: &aya::programs::Xdp = loaded
        .ebpf
        .program("ka_xdp")
        .expect("ka_xdp")
        .try_into()
        .expect("xdp");
    let insns = prog.info().expect("prog info").verified_instruction_count();
    println!("ka_xdp: verifier processed {insns:?} instructions");
}
